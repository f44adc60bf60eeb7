"""django-allauth adapters: agents are created by admins, never by public sign-up."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.http import HttpRequest


class AgentAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False


class AgentSocialAccountAdapter(DefaultSocialAccountAdapter):
    """ "Sign in with Microsoft" signs in agents who already exist, matched by email address."""

    def is_open_for_signup(self, request: HttpRequest, sociallogin: object) -> bool:
        return False
