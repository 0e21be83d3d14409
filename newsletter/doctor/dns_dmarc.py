"""The doctor's DMARC check (RFC 7489): a `v=DMARC1` record at _dmarc.<From domain>, or
at its organisational domain (by a rule of thumb, said in the finding), with a policy;
and From aligned with the DKIM d= and the SPF (bounce) domain under adkim/aspf.
"""

from __future__ import annotations

from newsletter.config import Finding, Settings, Severity
from newsletter.doctor.dns_domains import MailDomains
from newsletter.doctor.dns_lookup import Lookup
from newsletter.doctor.dns_records import aligned, organisational_domain, tags
from newsletter.hygiene import one_line

DMARC_POLICIES = ("none", "quarantine", "reject")
ORGANISATIONAL_RULE = (
    "the organisational domain by a rule of thumb (the last two labels, three under "
    "co.uk-style suffixes), not the Public Suffix List"
)


def check_dmarc(lookup: Lookup, domains: MailDomains, settings: Settings) -> list[Finding]:
    from_domain = domains.from_domain
    organisation = organisational_domain(from_domain)
    name = f"_dmarc.{from_domain}"
    records = _dmarc_records(lookup, name)
    inherited = False
    if not records and organisation != from_domain:
        name, inherited = f"_dmarc.{organisation}", True
        records = _dmarc_records(lookup, name)
    subject = f"DMARC {name}"
    publish = f'publish one TXT record at _dmarc.{organisation}: "v=DMARC1; p=quarantine"'
    if not records:
        tried = f"_dmarc.{from_domain}" + (f" nor _dmarc.{organisation}" if inherited else "")
        note = f" ({organisation} is {ORGANISATIONAL_RULE})" if inherited else ""
        return [
            Finding(
                Severity.ERROR,
                "DMARC",
                f"no DMARC record at {tried}{note}: Gmail and Yahoo require one of bulk senders",
                publish,
            )
        ]
    if len(records) > 1:
        return [Finding(Severity.ERROR, subject, f"{len(records)} DMARC records: receivers then "
                        "apply none (RFC 7489 §6.6.3)", "keep one")]  # fmt: skip
    record = one_line(records[0])
    try:
        found = tags(record)
    except ValueError as exc:
        return [Finding(Severity.ERROR, subject, f"malformed: {exc}", f"replace it: {publish}")]
    policy = found.get("sp", found.get("p")) if inherited else found.get("p")
    modes = {key: found.get(key, "r") for key in ("adkim", "aspf")}
    problem = None
    if found.get("v") != "DMARC1":
        problem = f"{record!r} does not start with v=DMARC1"
    elif policy is None:
        problem = f"{record!r} has no p= policy"
    elif policy not in DMARC_POLICIES:
        problem = f"p={policy} is not one of {', '.join(DMARC_POLICIES)}"
    elif any(mode not in ("r", "s") for mode in modes.values()):
        problem = "adkim= and aspf= take r (relaxed) or s (strict)"
    if problem is not None:
        return [Finding(Severity.ERROR, subject, f"malformed: {problem}", f"replace it: {publish}")]
    via = f" (inherited: {organisation} is {ORGANISATIONAL_RULE})" if inherited else ""
    if policy == "none":
        first = Finding(
            Severity.WARNING,
            subject,
            f"p=none{via}: receivers report failures but act on none, and forged mail as "
            f"{from_domain} still arrives",
            "once the reports show our mail passing, move to p=quarantine (then reject)",
        )
    else:
        first = Finding(Severity.OK, subject, f"p={policy}{via}")
    return [first, _alignment(domains, modes["adkim"], modes["aspf"])]


def _dmarc_records(lookup: Lookup, name: str) -> list[str]:
    """Records starting `v=DMARC1`: receivers ignore any other TXT at the name."""
    return [r for r in lookup.txt(name) if r.replace(" ", "").upper().startswith("V=DMARC1")]


def _alignment(domains: MailDomains, adkim: str, aspf: str) -> Finding:
    """DMARC passes when either DKIM's d= or SPF's (bounce) domain aligns with From."""
    from_domain = domains.from_domain
    words = {"r": "relaxed", "s": "strict"}
    subject = "DMARC alignment"
    dkim = domains.signed and aligned(domains.dkim_domain, from_domain, adkim)
    spf = aligned(domains.bounce_domain, from_domain, aspf)
    dkim_said = f"DKIM d={domains.dkim_domain} ({words[adkim]})"
    spf_said = f"SPF {domains.bounce_domain} ({words[aspf]})"
    if dkim and spf:
        return Finding(Severity.OK, subject, f"From {from_domain} aligns with {dkim_said} and "
                       f"{spf_said}")  # fmt: skip
    spf_fix = (
        f"use a bounce address at {from_domain}"
        + (" or a subdomain of it" if aspf == "r" else "")
        + " (NEWSLETTER_BOUNCE_ADDRESS)"
    )
    dkim_fix = f"set NEWSLETTER_DKIM_DOMAIN to {from_domain}" + (
        " or a subdomain of it" if adkim == "r" else ""
    )
    if not domains.signed:
        if spf:
            return Finding(Severity.OK, subject, f"From {from_domain} aligns with {spf_said} "
                           "(nothing is DKIM-signed)")  # fmt: skip
        return Finding(
            Severity.ERROR,
            subject,
            f"nothing aligns with From {from_domain}: not {spf_said}, and nothing is "
            "DKIM-signed, so DMARC fails for every message",
            f"{spf_fix}; and sign with DKIM at {from_domain}",
        )
    if dkim or spf:
        good, bad, fix = (dkim_said, spf_said, spf_fix) if dkim else (spf_said, dkim_said, dkim_fix)
        return Finding(
            Severity.WARNING,
            subject,
            f"From {from_domain} aligns with {good} only, not {bad}: DMARC passes while that "
            "one does",
            fix,
        )
    return Finding(
        Severity.ERROR,
        subject,
        f"nothing aligns with From {from_domain}: not {dkim_said}, not {spf_said}, so DMARC "
        "fails for every message",
        f"{dkim_fix}; or {spf_fix}",
    )
