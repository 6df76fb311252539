import subprocess
import sys


def test_domain_imports_neither_fastapi_nor_sqlalchemy():
    code = ("import sys, ipt_fhir.domain.apply, ipt_fhir.domain.rules, ipt_fhir.domain.progress, "
            "ipt_fhir.domain.narrative, ipt_fhir.domain.demo_data, ipt_fhir.domain.conformance_loader; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'sqlalchemy', 'sqlmodel')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
