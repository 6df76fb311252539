"""Packaging detail pyproject.toml cannot express: the top-level migrations/ folder ships inside the
distribution as the package `ipt_fhir.migrations`, so an installed server can migrate its database."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["ipt_fhir", "ipt_fhir.*"]) + ["ipt_fhir.migrations", "ipt_fhir.migrations.versions"],
    package_dir={"ipt_fhir.migrations": "migrations"},
)
