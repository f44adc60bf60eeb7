"""Word lists for the demo data: a B2B SaaS helpdesk and the companies it serves.

Every domain ends in `.example` (RFC 2606) and every phone number lies in a range reserved for
fiction, so mail or calls from a demo database never reach anyone.
"""

from __future__ import annotations

from typing import NamedTuple

from cases.choices import CaseType, OrganizationTier
from crm.choices import Availability, Role

DEMO_AGENT_DOMAIN = "support.example"


class TeamSpec(NamedTuple):
    name: str
    email: str


TEAMS = (
    TeamSpec("Support", "support@example.com"),
    TeamSpec("Billing", "billing@example.com"),
    TeamSpec("Technical", "technical@example.com"),
)


class AgentSpec(NamedTuple):
    """An agent; the local part of the address is how notes @mention them."""

    first_name: str
    last_name: str
    team: str
    role: str = Role.AGENT
    also_in: tuple[str, ...] = ()
    timezone: str = "Europe/Berlin"
    availability: str = Availability.AVAILABLE
    paused: bool = False
    capacity: int = 20

    @property
    def email(self) -> str:
        return f"{self.first_name.lower()}@{DEMO_AGENT_DOMAIN}"


AGENTS = (
    AgentSpec("Maria", "Schmidt", "Support", Role.LEAD),
    AgentSpec("Tom", "Becker", "Support", availability=Availability.AWAY),
    AgentSpec("Aisha", "Khan", "Support", also_in=("Billing",), timezone="Europe/London"),
    AgentSpec("Jonas", "Weber", "Billing", Role.LEAD),
    AgentSpec("Priya", "Nair", "Billing", timezone="Asia/Kolkata", capacity=12),
    AgentSpec("Lena", "Fischer", "Technical", Role.LEAD),
    AgentSpec("David", "Okafor", "Technical", timezone="Europe/London", capacity=8),
    AgentSpec("Sofia", "Rossi", "Technical", timezone="Europe/Rome", paused=True),
)


class OrganizationSpec(NamedTuple):
    name: str
    domains: tuple[str, ...]
    country: str


ORGANIZATIONS = (
    OrganizationSpec("Northwind Traders", ("northwind.example",), "UK"),
    OrganizationSpec("Brightpath Logistics", ("brightpath.example",), "NL"),
    OrganizationSpec("Alderbank Financial", ("alderbank.example",), "UK"),
    OrganizationSpec("Copperleaf Studios", ("copperleaf.example",), "IE"),
    OrganizationSpec("Helix Biolabs", ("helixbio.example", "helix-labs.example"), "DE"),
    OrganizationSpec("Meridian Health Partners", ("meridianhealth.example",), "US"),
    OrganizationSpec("Bluefjord Shipping", ("bluefjord.example",), "NO"),
    OrganizationSpec("Greenfield Energy", ("greenfield-energy.example",), "DE"),
    OrganizationSpec("Kestrel Aviation Services", ("kestrel-aviation.example",), "UK"),
    OrganizationSpec("Lumen Retail Group", ("lumenretail.example",), "FR"),
    OrganizationSpec("Oakridge Property Management", ("oakridge-pm.example",), "US"),
    OrganizationSpec("Pinecrest Insurance", ("pinecrest.example",), "US"),
    OrganizationSpec("Quayside Hotels", ("quaysidehotels.example",), "UK"),
    OrganizationSpec("Redwood Legal LLP", ("redwoodlegal.example",), "UK"),
    OrganizationSpec("Silverline Telecom", ("silverline.example",), "ES"),
    OrganizationSpec("Stonebridge Construction", ("stonebridge.example",), "DE"),
    OrganizationSpec("Tidewater Foods", ("tidewaterfoods.example",), "US"),
    OrganizationSpec("Vantage Consulting", ("vantage-consulting.example",), "CH"),
    OrganizationSpec(
        "Westbrook University", ("westbrook.example", "alumni.westbrook.example"), "UK"
    ),
    OrganizationSpec("Zephyr Software", ("zephyrsoft.example",), "SE"),
    OrganizationSpec("Orchard & Vale Accountants", ("orchardvale.example",), "UK"),
    OrganizationSpec("Harborview Clinics", ("harborview.example",), "US"),
    OrganizationSpec("Ironclad Security", ("ironclad-sec.example",), "DE"),
    OrganizationSpec("Juniper Education Trust", ("juniper-edu.example",), "IE"),
    OrganizationSpec("Marlow Engineering", ("marlow-eng.example",), "UK"),
    OrganizationSpec("Nimbus Analytics", ("nimbusanalytics.example",), "NL"),
    OrganizationSpec("Polaris Freight", ("polarisfreight.example",), "PL"),
    OrganizationSpec("Riverside Dental Group", ("riversidedental.example",), "US"),
    OrganizationSpec("Summit Outdoor Gear", ("summitoutdoor.example",), "AT"),
    OrganizationSpec("Trellis Architecture", ("trellis-arch.example",), "DK"),
)

TIER_WEIGHTS = {
    OrganizationTier.STANDARD: 5,
    OrganizationTier.SILVER: 3,
    OrganizationTier.GOLD: 2,
    OrganizationTier.PLATINUM: 1,
}

ORGANIZATION_NOTES = (
    "",
    "",
    "Renewal due next quarter; account manager: Maria.",
    "Uses SSO with Microsoft Entra ID for all staff.",
    "Prefers phone calls for anything urgent.",
    "Invoices go to their accounts payable team, always quote the PO number.",
    "Pilot customer for the new reporting module.",
)

# Personal mailboxes for the few customers who write from home.
PERSONAL_DOMAINS = ("mail.example", "inbox.example", "post.example")

FIRST_NAMES = (
    "Anna", "Ben", "Chloé", "Daniel", "Elena", "Farid", "Grace", "Hannah", "Ivan", "Julia",
    "Kenji", "Laura", "Marco", "Nina", "Oliver", "Paula", "Rafael", "Sara", "Thomas", "Ursula",
    "Victor", "Wei", "Yasmin", "Zoe", "Lukas", "Emma", "Noah", "Mia", "Mateo", "Amira",
    "Sean", "Ingrid", "Kofi", "Renée", "Jakub", "Leila", "Oscar", "Freya", "Hugo", "Nadia",
)  # fmt: skip

LAST_NAMES = (
    "Andersen", "Baker", "Costa", "Dubois", "Evans", "Fernández", "Green", "Hoffmann", "Ito",
    "Jensen", "Kowalski", "Lindqvist", "Murphy", "Novak", "O'Brien", "Patel", "Quinn", "Richter",
    "Santos", "Taylor", "Umarov", "Vogel", "Walsh", "Xu", "Young", "Zimmermann", "Byrne",
    "Moreau", "Nilsen", "Kapoor", "Müller", "Brennan", "Haddad", "Larsen", "Mensah", "Sato",
)  # fmt: skip

# Reserved for drama: Ofcom's 020 7946 0xxx and 07700 900xxx, and the US 555-01xx range.
PHONE_FORMATS = {
    "UK": ("+44 20 7946 0{:03d}", "+44 7700 900{:03d}"),
    "US": ("+1 202 555 01{:02d}", "+1 312 555 01{:02d}"),
}

CUSTOMER_NOTES = (
    "Main contact for all support questions.",
    "Decision maker for the renewal.",
    "Prefers email over phone.",
    "Very technical; happy to read logs.",
    "Works part-time, Monday to Wednesday.",
)


class CaseTemplate(NamedTuple):
    """A kind of case a customer raises. `{first}`, `{org}`, `{ref}`, `{count}`, `{amount}`,
    `{day}` (a date before the case) and `{later}` (one after it) are filled in per case."""

    title: str
    type: str
    tags: tuple[str, ...]
    description: str


SIGN_OFF = "\n\nBest regards,\n{first}"

CASE_TEMPLATES: dict[str, tuple[CaseTemplate, ...]] = {
    "Support": (
        CaseTemplate(
            "Password reset email never arrives",
            CaseType.INCIDENT,
            ("login", "email"),
            "Hello,\n\nI requested a password reset three times since {day}, but no email "
            "arrives, not even in the spam folder. Could you check whether our domain is blocked?"
            + SIGN_OFF,
        ),
        CaseTemplate(
            "How do I add a new user to our account?",
            CaseType.QUESTION,
            ("users",),
            "Hi,\n\nwe have a new colleague starting on {later}. Where do I invite her, and can I "
            "give her read-only access for the first weeks?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Remove a former employee's access",
            CaseType.REQUEST,
            ("users", "security"),
            "Hello,\n\nplease make sure that our former colleague can no longer sign in. He left "
            "{org} last Friday and still has an active account." + SIGN_OFF,
        ),
        CaseTemplate(
            "Dashboard shows no data since this morning",
            CaseType.INCIDENT,
            ("dashboard",),
            "Hi,\n\nall widgets on our dashboard are empty since about 8:30 today. Reports still "
            "work. {count} people in our team are affected." + SIGN_OFF,
        ),
        CaseTemplate(
            "Excel export stops after 1,000 rows",
            CaseType.PROBLEM,
            ("export",),
            "Hello,\n\nwhen I export the contact list to Excel, the file always ends at row "
            "1,000. We have roughly {count}00 contacts. Is there a limit we can raise?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Change the account owner to our new IT manager",
            CaseType.REQUEST,
            ("account",),
            "Hi,\n\nour IT manager changed. Please transfer the ownership of the {org} account to "
            "her; she is already a user." + SIGN_OFF,
        ),
        CaseTemplate(
            "Notification emails end up in spam",
            CaseType.PROBLEM,
            ("email",),
            "Hello,\n\nsince last week all notifications from your system land in our spam "
            "folder. Our mail admin asks whether you changed your sending servers." + SIGN_OFF,
        ),
        CaseTemplate(
            "Where can I find the audit log?",
            CaseType.QUESTION,
            ("security", "audit"),
            "Hi,\n\nour auditors ask who changed permissions in March. Is there an audit log, "
            "and can I export it?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Mobile app logs me out every few minutes",
            CaseType.PROBLEM,
            ("mobile",),
            "Hello,\n\nthe app on my phone signs me out several times an hour since the last "
            "update. Reinstalling did not help." + SIGN_OFF,
        ),
        CaseTemplate(
            "Training session for new staff",
            CaseType.REQUEST,
            ("training",),
            "Hi,\n\nwe onboard {count} new people next month. Could you offer a one-hour online "
            "training on {later}?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Slow answers from support lately",
            CaseType.COMPLAINT,
            ("feedback",),
            "Hello,\n\nwe waited four days for an answer to our last question. For a tool our "
            "whole office depends on, this is not acceptable." + SIGN_OFF,
        ),
        CaseTemplate(
            "Two-factor codes are rejected",
            CaseType.INCIDENT,
            ("login", "mfa"),
            "Hi,\n\nmy authenticator codes are refused with 'invalid code'. The time on my "
            "phone is correct. I am locked out now." + SIGN_OFF,
        ),
        CaseTemplate(
            "Can we rename our workspace?",
            CaseType.QUESTION,
            ("account",),
            "Hello,\n\nafter our rebranding we would like the workspace to be called {org}. "
            "Will links our customers bookmarked keep working?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Scheduled report arrives at the wrong time",
            CaseType.PROBLEM,
            ("reports", "timezone"),
            "Hi,\n\nthe weekly report should arrive on Monday at 7:00 but comes at 9:00. "
            "Probably a time zone issue?" + SIGN_OFF,
        ),
        CaseTemplate(
            "CSV import fails with an encoding error",
            CaseType.PROBLEM,
            ("import",),
            "Hello,\n\nimporting our customer list fails with 'invalid byte sequence' at line "
            "{count}. The file comes from Excel." + SIGN_OFF,
        ),
        CaseTemplate(
            "Attachments missing on older records",
            CaseType.INCIDENT,
            ("attachments",),
            "Hi,\n\nPDFs attached to records from last year show 'file not found'. We need them "
            "for an audit by {later}." + SIGN_OFF,
        ),
        CaseTemplate(
            "Please extend our trial by two weeks",
            CaseType.REQUEST,
            ("trial",),
            "Hello,\n\nour evaluation was delayed by the holidays. Could you extend the trial "
            "for {org} by two weeks?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Search does not find contacts by phone number",
            CaseType.PROBLEM,
            ("search",),
            "Hi,\n\nsearching for a phone number with spaces finds nothing, without spaces it "
            "works. Our team types numbers both ways." + SIGN_OFF,
        ),
        CaseTemplate(
            "The new layout slows our team down",
            CaseType.COMPLAINT,
            ("feedback", "ui"),
            "Hello,\n\nsince the redesign it takes three clicks instead of one to log a call. "
            "Can we switch back to the old layout?" + SIGN_OFF,
        ),
        CaseTemplate(
            "User locked out after too many attempts",
            CaseType.INCIDENT,
            ("login",),
            "Hi,\n\none of our users is locked out after mistyping his password. Can you unlock "
            "the account? He needs it for a client meeting today." + SIGN_OFF,
        ),
    ),
    "Billing": (
        CaseTemplate(
            "Invoice shows wrong VAT rate",
            CaseType.PROBLEM,
            ("invoice", "vat"),
            "Hello,\n\ninvoice INV-{ref} charges 19% VAT, but as a business customer abroad we "
            "fall under reverse charge. Please send a corrected invoice." + SIGN_OFF,
        ),
        CaseTemplate(
            "Charged twice for the annual subscription",
            CaseType.INCIDENT,
            ("payment", "refund"),
            "Hi,\n\nour credit card was charged {amount} twice on {day}. Please refund the "
            "second payment." + SIGN_OFF,
        ),
        CaseTemplate(
            "Send invoices to our accounts payable address",
            CaseType.REQUEST,
            ("invoice",),
            "Hello,\n\nfrom now on please send all invoices for {org} to our accounts payable "
            "mailbox instead of to me." + SIGN_OFF,
        ),
        CaseTemplate(
            "Upgrade from Standard to Professional",
            CaseType.REQUEST,
            ("plan",),
            "Hi,\n\nwe would like to upgrade to the Professional plan for all {count} users. "
            "Will the price be prorated for this month?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Card payment declined although the card is valid",
            CaseType.INCIDENT,
            ("payment",),
            "Hello,\n\nthe renewal payment was declined, but our bank sees no attempt at all. "
            "Could you try again or send a payment link?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Purchase order number missing on invoices",
            CaseType.REQUEST,
            ("invoice",),
            "Hi,\n\nour finance team rejects invoices without our PO number PO-{ref}. Please add "
            "it to INV-{ref} and all future invoices." + SIGN_OFF,
        ),
        CaseTemplate(
            "Refund for unused licences",
            CaseType.REQUEST,
            ("refund", "licences"),
            "Hello,\n\nwe reduced our team and have {count} unused licences until renewal. Can "
            "we get a credit for them?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Why did our monthly bill increase?",
            CaseType.QUESTION,
            ("pricing",),
            "Hi,\n\nthis month's invoice is {amount}, noticeably more than usual. Nothing changed "
            "on our side as far as I know. Could you explain?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Reverse charge note missing on invoice",
            CaseType.PROBLEM,
            ("invoice", "vat"),
            "Hello,\n\nour tax adviser says INV-{ref} must mention the reverse charge procedure. "
            "Please reissue it." + SIGN_OFF,
        ),
        CaseTemplate(
            "Switch from monthly to annual billing",
            CaseType.REQUEST,
            ("plan",),
            "Hi,\n\nwe would like to move {org} to annual billing to get the discount. When does "
            "the change take effect?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Invoice address still shows our old office",
            CaseType.REQUEST,
            ("invoice",),
            "Hello,\n\nwe moved on {day}, but invoices still show the old address. The new one is "
            "in our account settings already." + SIGN_OFF,
        ),
        CaseTemplate(
            "Cancel our subscription at the end of the term",
            CaseType.REQUEST,
            ("cancellation",),
            "Hi,\n\nplease do not renew our subscription. We will keep using the service until "
            "the end of the current term." + SIGN_OFF,
        ),
        CaseTemplate(
            "Payment reminder although the invoice is paid",
            CaseType.COMPLAINT,
            ("payment", "dunning"),
            "Hello,\n\nwe received a second reminder for INV-{ref}, which we paid on {day}. "
            "Remittance advice attached. Please stop the reminders." + SIGN_OFF,
        ),
        CaseTemplate(
            "Licence count does not match active users",
            CaseType.QUESTION,
            ("licences",),
            "Hi,\n\nwe pay for {count} licences but only see fewer active users. Do deactivated "
            "users still count?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Invoice should be in EUR, not USD",
            CaseType.PROBLEM,
            ("invoice",),
            "Hello,\n\nour contract is in EUR, but INV-{ref} is issued in USD. Our bookkeeping "
            "cannot process it." + SIGN_OFF,
        ),
        CaseTemplate(
            "Contract discount not applied",
            CaseType.COMPLAINT,
            ("pricing", "contract"),
            "Hi,\n\nour contract grants 15% off list price, yet the last two invoices show the "
            "full price. Please correct them." + SIGN_OFF,
        ),
    ),
    "Technical": (
        CaseTemplate(
            "SSO login fails after password change",
            CaseType.INCIDENT,
            ("sso", "login"),
            "Hello,\n\nsince I changed my Microsoft password this morning, single sign-on ends "
            "with 'AADSTS50126'. Colleagues who did not change theirs can log in." + SIGN_OFF,
        ),
        CaseTemplate(
            "API returns 429 during our nightly sync",
            CaseType.PROBLEM,
            ("api", "rate-limit"),
            "Hi,\n\nour nightly job gets '429 Too Many Requests' after about {count}00 calls. "
            "What are the limits, and can they be raised for {org}?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Webhook deliveries time out",
            CaseType.INCIDENT,
            ("webhooks",),
            "Hello,\n\nthe delivery log shows timeouts for all webhooks to our endpoint since "
            "{day}. Our endpoint answers in under a second when we test it." + SIGN_OFF,
        ),
        CaseTemplate(
            "Outlook calendar sync stopped for several users",
            CaseType.INCIDENT,
            ("calendar", "microsoft-365"),
            "Hi,\n\n{count} users no longer see new appointments from Outlook. The connection "
            "page says 'last synced 2 days ago'." + SIGN_OFF,
        ),
        CaseTemplate(
            "Shared mailbox does not sync new messages",
            CaseType.INCIDENT,
            ("mailbox", "microsoft-365"),
            "Hello,\n\nour shared mailbox stopped bringing in new mail around noon. Messages "
            "arrive in Outlook but not in the CRM." + SIGN_OFF,
        ),
        CaseTemplate(
            "iPhone Mail cannot connect to the account",
            CaseType.PROBLEM,
            ("activesync", "mobile"),
            "Hi,\n\nafter the iOS update the Mail app says 'cannot verify server identity' for "
            "the CRM account. Other accounts work." + SIGN_OFF,
        ),
        CaseTemplate(
            "Entra ID group sync creates duplicate users",
            CaseType.PROBLEM,
            ("sso", "provisioning"),
            "Hello,\n\nevery night the provisioning creates a second copy of {count} users whose "
            "address changed case. Can you merge them?" + SIGN_OFF,
        ),
        CaseTemplate(
            "API token stopped working after rotation",
            CaseType.INCIDENT,
            ("api",),
            "Hi,\n\nwe rotated our API token as recommended, and now every call returns 401 even "
            "with the new token." + SIGN_OFF,
        ),
        CaseTemplate(
            "Sandbox environment for integration tests",
            CaseType.REQUEST,
            ("api", "sandbox"),
            "Hello,\n\nwe are building an integration with our ERP. Can {org} get a sandbox so we "
            "do not test against live data?" + SIGN_OFF,
        ),
        CaseTemplate(
            "API export is missing custom fields",
            CaseType.PROBLEM,
            ("api", "export"),
            "Hi,\n\nthe case export endpoint returns standard fields only; our {count} custom "
            "fields are missing. Is there a parameter for them?" + SIGN_OFF,
        ),
        CaseTemplate(
            "How do we roll over our SAML certificate?",
            CaseType.QUESTION,
            ("sso",),
            "Hello,\n\nour SAML signing certificate expires on {later}. How do we add the new one "
            "without locking everybody out?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Pages take over 10 seconds to load",
            CaseType.INCIDENT,
            ("performance",),
            "Hi,\n\nsince this morning every page takes 10 to 15 seconds to load for our whole "
            "office. Our internet connection is fine." + SIGN_OFF,
        ),
        CaseTemplate(
            "IP allow-list blocks our new office",
            CaseType.REQUEST,
            ("security", "network"),
            "Hello,\n\nwe opened a second office and its users cannot reach the login page. "
            "Please add our new IP range to the allow-list." + SIGN_OFF,
        ),
        CaseTemplate(
            "Zapier integration creates empty records",
            CaseType.PROBLEM,
            ("integrations",),
            "Hi,\n\nour Zap creates contacts without name or email since {day}. The Zap history "
            "shows all fields being sent." + SIGN_OFF,
        ),
        CaseTemplate(
            "DKIM check fails for mail sent from the CRM",
            CaseType.PROBLEM,
            ("email", "dns"),
            "Hello,\n\nour customers' mail servers flag our replies because DKIM fails. Which "
            "DNS records do we need for {org}?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Admin consent for Microsoft Graph",
            CaseType.QUESTION,
            ("microsoft-365",),
            "Hi,\n\nour tenant admin asks which Graph permissions the CRM needs and why before "
            "granting consent. Is there a document?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Bulk update job stuck at 60%",
            CaseType.INCIDENT,
            ("jobs",),
            "Hello,\n\nthe bulk update of {count}00 records has been at 60% for three hours. "
            "Can you check whether it is still running?" + SIGN_OFF,
        ),
        CaseTemplate(
            "Root cause analysis for last week's outage",
            CaseType.REQUEST,
            ("rca", "outage"),
            "Hi,\n\nour management asks for a written root cause analysis of last week's outage "
            "and what you changed to prevent it." + SIGN_OFF,
        ),
    ),
}

# The incident other cases hang from (one parent/child pair, "caused by" links).
OUTAGE = CaseTemplate(
    "Outage: EU API gateway returning 502 errors",
    CaseType.PROBLEM,
    ("outage", "api"),
    "Monitoring shows 502 responses from the EU API gateway for about 40% of requests since "
    "10:12 UTC. Customers report slow pages and failed webhooks. Tracking all reports here.",
)
OUTAGE_EFFECTS = ("Pages take over 10 seconds to load", "Webhook deliveries time out")

DUPLICATE_DESCRIPTION = (
    "Hello again,\n\nsending this a second time in case my first message got lost; it is "
    "urgent for us." + SIGN_OFF
)

NOTES = (
    "Called the customer; the problem started right after the last release.",
    "Reproduced it on staging with the customer's settings.",
    "Customer is on a Gold contract, keep them updated daily.",
    "Sent the workaround, waiting for their confirmation.",
    "Opened a ticket with the vendor, reference VND-{ref}.",
    "Checked the logs: the requests never reach our servers, likely their proxy.",
    "Customer confirmed the fix works for all affected users.",
    "Explained the behaviour; it works as designed, added it to the FAQ draft.",
    "Left a voicemail, will try again tomorrow morning.",
    "Credit note CN-{ref} issued and sent.",
    "This is the third report of this kind this week.",
    "Escalated internally, engineering is looking at it.",
)

MENTION_NOTES = (
    "@{mention} please check the logs for {org}; errors start around 09:40.",
    "@{mention} can you take over while I'm out tomorrow?",
    "@{mention} this looks like the bug from last week, can you confirm?",
    "@{mention} the customer asked for a call with a lead, could you join?",
    "@{mention} could you issue a credit note here? Details above.",
    "Waiting for @{mention} to confirm before I reply to the customer.",
)

CASE_TASKS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "Support": (
        ("Call the customer back", ()),
        ("Follow up if there is no reply by Friday", ()),
        ("Write a knowledge-base article from this case", ("Draft", "Review with lead", "Publish")),
        ("Reproduce the problem on staging", ("Copy the customer's settings", "Reproduce")),
        ("Check the user's permissions", ()),
        ("Send the step-by-step guide", ()),
        ("Schedule a screen-sharing session", ("Propose times", "Send the invitation")),
    ),
    "Billing": (
        ("Issue a corrected invoice", ("Cancel the original", "Create the correction", "Send")),
        ("Refund the duplicate payment", ("Find both transactions", "Refund", "Notify customer")),
        ("Check the payment provider's logs", ()),
        ("Update the billing address", ()),
        ("Confirm the plan change in writing", ()),
        ("Ask finance to approve the credit note", ()),
    ),
    "Technical": (
        ("Collect logs and request IDs", ("Ask for the time window", "Export the logs")),
        ("Escalate to engineering", ()),
        ("Verify the fix with the customer", ()),
        ("Check the Graph subscription of the mailbox", ()),
        ("Rotate the customer's API credentials", ("Create new token", "Revoke the old one")),
        ("Write the incident summary", ("Timeline", "Root cause", "Follow-up actions")),
        ("Review DNS records with the customer", ()),
    ),
}

STANDALONE_TASKS = (
    ("Review the unassigned queue before the weekly meeting", ()),
    ("Update the macros for the new VAT rules", ("Draft the new texts", "Review", "Publish")),
    ("Prepare the quarterly review for Gold customers", ("Pull the numbers", "Write slides")),
    ("Onboard the new agent", ("Create accounts", "Shadowing session", "First own cases")),
    ("Clean up duplicate customers", ()),
    ("Renew the SAML test certificate", ()),
    ("Plan holiday cover for December", ()),
    ("Read the release notes of the next version", ()),
    ("Check open refunds with finance", ()),
    ("Update the status page template", ()),
    ("Archive last year's closed cases report", ()),
    ("Test the new mobile app build", ("Install", "Sign in", "Sync mail and calendar")),
    ("Call {customer} about the renewal", ()),
    ("Send {org} their quarterly usage report", ("Export the figures", "Write the summary")),
    ("Check in with {customer} after last week's escalation", ()),
)

TASK_CATEGORY = {"Support": "Follow-up", "Billing": "Billing", "Technical": "Engineering"}
