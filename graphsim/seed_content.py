"""The words `graphsim.seed` builds its mail from: people, companies, support topics.

Plain data, kept apart so the builders stay readable. Texts may use `{ref}` (an order or
invoice number) and `{first}` (the customer's first name).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DOMAINS = (
    "nordwind.example",
    "fjordline.example",
    "alpenhof.example",
    "cedar-labs.example",
    "atlas-freight.example",
    "sakura-trading.example",
    "lumen-health.example",
    "brightwater.example",
)

# (display first name, display last name, ASCII local-part form)
CUSTOMER_NAMES = (
    ("Anna", "Berg", "anna.berg"),
    ("Lars", "Nilsson", "lars.nilsson"),
    ("Sofia", "Rossi", "sofia.rossi"),
    ("Mateo", "García", "mateo.garcia"),
    ("Chloé", "Dubois", "chloe.dubois"),
    ("Jürgen", "Weiß", "juergen.weiss"),
    ("Priya", "Raman", "priya.raman"),
    ("Tomasz", "Kowalski", "tomasz.kowalski"),
    ("Emma", "Johansson", "emma.johansson"),
    ("Noah", "Fischer", "noah.fischer"),
    ("Olivia", "Brown", "olivia.brown"),
    ("Kwame", "Mensah", "kwame.mensah"),
    ("Zoë", "O'Brien", "zoe.obrien"),
    ("Mikael", "Virtanen", "mikael.virtanen"),
    ("Ines", "Carvalho", "ines.carvalho"),
    ("David", "Cohen", "david.cohen"),
)
JAPANESE_CUSTOMER = ("由紀", "田中", "yuki.tanaka")
ARABIC_CUSTOMER = ("ليلى", "حداد", "layla.haddad")
GERMAN_CUSTOMER = ("Jürgen", "Müller-Lüdenscheidt", "juergen.mueller")

SUPPORT_AGENTS = ("Maja Lindqvist", "Tom Becker", "Priya Natarajan", "Jonas Eriksen")
CATEGORIES = ("Billing", "Technical", "VIP", "Escalated", "Sales", "Waiting for customer")
USER_FOLDERS = ("Escalations", "Waiting for customer")


@dataclass(frozen=True)
class Topic:
    """A support conversation: what the customer writes and what support answers, in turn.

    Texts past the end of a list come from the generic follow-ups of the topic's language.
    """

    subject: str | None
    customer: tuple[str, ...]
    support: tuple[str, ...]
    language: str = "en-US"
    rtl: bool = False


TOPICS = (
    Topic(
        "Invoice {ref} shows the wrong VAT rate",
        (
            "Our invoice {ref} was charged at 25% VAT, but we are VAT registered in another EU "
            "country and the reverse charge should apply. Could you issue a corrected invoice?",
        ),
        (
            "Thank you for pointing this out. I have asked our billing team to cancel invoice "
            "{ref} and issue a credit note together with a corrected invoice.",
        ),
    ),
    Topic(
        "Cannot log in to the customer portal",
        (
            "Since this morning none of us can log in to the portal. The page says 'Your session "
            "has expired' straight after entering the password. We tried two browsers.",
        ),
        (
            "Sorry for the trouble. We rolled out a change to single sign-on last night; could "
            "you clear the cookies for our portal and try once more? I have reset your session.",
        ),
    ),
    Topic(
        "Delivery {ref} arrived damaged",
        (
            "Order {ref} arrived today, but two of the six boxes were crushed and the units "
            "inside are dented. Photos are attached. How do we proceed with a replacement?",
        ),
        (
            "I am sorry to hear that. I have opened a claim with the carrier and a replacement "
            "for the two units leaves our warehouse tomorrow; no need to return the damaged ones.",
        ),
    ),
    Topic(
        "Request for a quote: 40 additional licences",
        (
            "We are growing and would like to add 40 licences to contract {ref} from next month. "
            "Could you send us a quote, and do volume discounts apply above 100 seats?",
        ),
        (
            "Thanks for your interest! Volume pricing starts at 100 seats, so the new total of "
            "140 qualifies. I will send the quote for contract {ref} by tomorrow.",
        ),
    ),
    Topic(
        "API returns 500 on /v2/orders",
        (
            "Our integration gets HTTP 500 from POST /v2/orders for about one request in twenty "
            "since Tuesday. Request id of the last failure: {ref}. Nothing changed on our side.",
        ),
        (
            "Thanks for the request id. Our engineers traced {ref} to a database failover on "
            "Tuesday; a fix is deployed. Please let us know if you still see errors.",
        ),
    ),
    Topic(
        "Change of billing address",
        (
            "Please note our new billing address from 1 April: Hafenstraße 12, 20457 Hamburg. "
            "Our customer number is {ref}.",
        ),
        (
            "Thank you, I have updated the billing address for customer {ref}; your next invoice "
            "will show it.",
        ),
    ),
    Topic(
        "Cancel subscription {ref}",
        (
            "We would like to cancel subscription {ref} at the end of the current term. Please "
            "confirm the cancellation and the last billing date.",
        ),
        (
            "I have scheduled the cancellation of subscription {ref}. It stays active until the "
            "end of the term, and no further invoices will be issued after that.",
        ),
    ),
    Topic(
        "Urgent: production line stopped",
        (
            "Our production line has been down for an hour because the controller shows error "
            "E-{ref}. We need a technician today. Please call me back as soon as possible.",
        ),
        (
            "A technician is on the way and should be with you within two hours. Error E-{ref} "
            "usually means a failed power supply; he carries a replacement.",
        ),
    ),
)

GENERIC_CUSTOMER = (
    "Thanks for the quick answer. One more question: does this also apply to our second "
    "account, or do we need to open a separate request for it?",
    "That worked, thank you! You can close this ticket.",
    "Unfortunately the problem is back since yesterday afternoon. Could you have another look?",
    "Thank you very much for your help, much appreciated.",
)
GENERIC_SUPPORT = (
    "Yes, I have applied the same change to your second account, nothing else is needed.",
    "Glad to hear it is sorted. I am closing this request now; just reply if anything comes up.",
    "I am sorry it came back. I have escalated this to our second-level team and will update "
    "you by tomorrow noon.",
    "You are welcome, have a nice day!",
)

GERMAN_TOPIC = Topic(
    "Rückfrage zur Rechnung {ref} – Größe und Gewicht der Lieferung",
    (
        "Sehr geehrte Damen und Herren, auf der Rechnung {ref} ist das Gewicht der Lieferung mit "
        "120 kg angegeben, tatsächlich waren es nur 85 kg. Bitte prüfen Sie die Frachtkosten.",
        "Vielen Dank für die schnelle Korrektur! Grüße aus Lüdenscheid.",
        "Eine Frage noch: Gilt der Rabatt auch für die Bestellung nächste Woche?",
    ),
    (
        "Guten Tag, vielen Dank für den Hinweis. Wir haben die Frachtkosten für {ref} neu "
        "berechnet; die korrigierte Rechnung erhalten Sie morgen.",
        "Gern geschehen! Wir schließen die Anfrage damit.",
        "Ja, der Rabatt gilt für alle Bestellungen bis Ende des Quartals.",
    ),
    language="de-DE",
)
JAPANESE_TOPIC = Topic(
    "請求書 {ref} について",
    ("いつもお世話になっております。請求書 {ref} の金額が見積書と異なっております。"
     "ご確認いただけますでしょうか。",
     "ご対応いただき、誠にありがとうございました。",
     "追加で質問がございます。支払期限は延長可能でしょうか。"),
    ("お問い合わせいただきありがとうございます。請求書 {ref} を確認し、"
     "修正版を本日中にお送りいたします。",
     "どういたしまして。今後ともよろしくお願いいたします。",
     "はい、支払期限を30日間延長いたしました。"),
    language="ja-JP",
)  # fmt: skip
EMOJI_TOPIC = Topic(
    "🚀 Launch tomorrow – is the upgrade done? 🎉",
    (
        "Hi team 👋 we launch tomorrow at 9:00 and need the plan upgrade for account {ref} "
        "before then. Can you confirm? 🙏",
        "Amazing, thank you!!! 🥳🥳",
        "Quick one: do the new limits apply right away? ⏱️",
    ),
    (
        "Hi {first} 😊 the upgrade for {ref} is done and active. Good luck with the launch! 🚀",
        "You're welcome! 🎉",
        "Yes, the new limits apply immediately ✅",
    ),
)
RTL_TOPIC = Topic(
    "مشكلة في تسجيل الدخول إلى الحساب {ref}",
    ("مرحباً، لا أستطيع تسجيل الدخول إلى حسابي رقم {ref} منذ يوم أمس. "
     "تظهر رسالة خطأ عند إدخال كلمة المرور.",
     "شكراً جزيلاً، تم حل المشكلة.",
     "هل يمكنني تغيير البريد الإلكتروني المرتبط بالحساب؟"),
    ("مرحباً، قمنا بإعادة تعيين كلمة المرور للحساب {ref}. ستصلك رسالة خلال دقائق.",
     "على الرحب والسعة!",
     "نعم، يمكنك تغييره من صفحة الإعدادات."),
    language="ar-SA",
    rtl=True,
)  # fmt: skip
NO_SUBJECT_TOPIC = Topic(
    "",
    ("Hi, see the attached document, the figures in section 3 look wrong to us.",),
    ("Thank you, we are checking the figures in section 3 and will come back to you.",),
)
NULL_SUBJECT_TOPIC = Topic(
    None,
    ("Sent from my phone: please call me back about order {ref}.",),
    ("We tried to call you about order {ref}; when is a good time?",),
)
