"""Narrative XHTML (narrative.html#xhtml, txt-1 and txt-2): what is accepted, and which problem is named."""
from __future__ import annotations

import pytest

from ipt_fhir.fhir.validation.xhtml import check_xhtml

NS = 'xmlns="http://www.w3.org/1999/xhtml"'


@pytest.mark.parametrize("div", [
    f'<div {NS}>plain text</div>',
    f'<div {NS} xml:lang="en" lang="en" xml:space="preserve"><p class="x">text</p></div>',  # xml:lang, xml:space
    f'<div {NS}><img src="chart.png" alt=""/></div>',  # an image is content enough
    f'<div {NS}><![CDATA[ text ]]></div>',
    f'<div {NS}>&nbsp;&eacute;t&eacute; &amp; more</div>',  # HTML named entities, as narratives use them
    f'<div {NS}><table><tr><td colspan="2">x</td></tr></table></div>',
])
def test_valid_narratives_pass(div):
    assert check_xhtml(div) is None


@pytest.mark.parametrize(("div", "problem"), [
    (f'<div {NS}><script>x</script><p>unclosed</div>', "not well-formed"),  # malformed is named first
    (f'<div {NS}><p onclick="x()">a</p><script>b</script></div>', "attribute 'onclick' on <p>"),  # first problem
    (f'<div {NS} a:b="1" xmlns:a="urn:a">x</div>', "attribute '{urn:a}b' on <div>"),
    (f'<div {NS}><x:p xmlns:x="urn:x">y</x:p></div>', "element {urn:x}p is not in the XHTML namespace"),
    (f'<div {NS}><p xmlns="">y</p></div>', "element p is not in the XHTML namespace"),
    (f'<div {NS}><p src="a.png">y</p></div>', "<p> may not reference external content"),
    (f'<div {NS}><a href=" JavaScript:go()">y</a></div>', "<a> href must not be a script"),
    (f'<div {NS}><p> </p><!-- only a comment --></div>', "non-whitespace content (txt-2)"),
    (f'<span {NS}>x</span>', "root must be a <div>"),
    (f'<div {NS}>&undefined;</div>', "not well-formed"),
    # The div is an XHTML fragment (Narrative.div): no document type, so no entity is declared, expanded
    # (billion laughs) or fetched (XXE); an undeclared one is malformed, as always
    (f'<!DOCTYPE div [<!ENTITY e "declared here">]><div {NS}>&e;</div>', "must not contain a DOCTYPE"),
    (f'<!DOCTYPE div [<!ENTITY e SYSTEM "http://example.org/e">]><div {NS}>&e; x</div>', "must not contain a DOCTYPE"),
    (f'<!DOCTYPE div SYSTEM "http://example.org/x.dtd"><div {NS}>x</div>', "must not contain a DOCTYPE"),
    (f'<!DOCTYPE div><div {NS}>x</div>', "must not contain a DOCTYPE"),
    (f'<!DOCTYPE div [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><div {NS}>&b;</div>', "must not contain a DOCTYPE"),
    (f'<div {NS} a:b="1" xmlns:a="urn:a b">x</div>', "attribute '{urn:a b}b' on <div>"),
])
def test_problems_are_named(div, problem):
    message = check_xhtml(div)
    assert message is not None and problem in message, message
