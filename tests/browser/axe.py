"""The automated accessibility scan: axe-core (vendored, tests/browser/vendor) run in the page.

axe is injected into the page under test and run against the whole document. The pages' CSP
(`script-src 'self'`) forbids the inline `<script>` that `page.add_script_tag` writes, so the
scanning context is opened with `bypass_csp=True` (see `scan_context`); the CSP of the pages
users get is unchanged.
"""

from __future__ import annotations

from pathlib import Path

AXE_PATH = Path(__file__).parent / "vendor" / "axe-4.14.1.min.js"
# What fails a scan. "moderate" and "minor" findings are printed but tolerated.
BLOCKING_IMPACTS = ("serious", "critical")


def axe_violations(page, *, impacts: tuple[str, ...] = BLOCKING_IMPACTS) -> list[dict]:
    """Every axe violation on the page as it is now whose impact is one of `impacts`.

    Each violation is axe's own dict (`id`, `impact`, `help`, `helpUrl`, `nodes` with their
    `target` selectors and `failureSummary`). Injects axe once per document. Frames are not
    scanned: the only ones are the sandboxed mail bodies, whose markup is the sender's.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_PATH))
    results = page.evaluate(
        """async () => {
            const results = await axe.run(document, {resultTypes: ["violations"], iframes: false});
            return results.violations;
        }"""
    )
    return [v for v in results if v["impact"] in impacts]


def describe(violations: list[dict]) -> str:
    """The violations as an assertion message: rule, impact, help, and each failing element."""
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"][:10]:
            summary = " ".join((node.get("failureSummary") or "").split())
            lines.append(f"    {' > '.join(map(str, node['target']))}: {summary[:300]}")
        if len(violation["nodes"]) > 10:
            lines.append(f"    … and {len(violation['nodes']) - 10} more")
    return "\n".join(lines)


def scan_context(browser, **options):
    """A browser context in which axe can be injected (CSP bypassed for this context only)."""
    return browser.new_context(bypass_csp=True, **options)
