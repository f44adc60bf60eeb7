"""What the browser tests share."""

from __future__ import annotations

from tests.crm.factories import DEFAULT_PASSWORD


def sign_in(page, base: str, email: str) -> None:
    """Sign in through the real form and land on the queues."""
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{base}/cases/**")
