"""What several simulator tests do: follow a delta round as a client would."""

IMMUTABLE = 'IdType="ImmutableId"'


def delta_round(session, url, page_size=10, *, immutable=True):
    """Follow next links to the delta link, resending the Prefer header each time, as a client
    must; returns (pages, items, delta link)."""
    prefer = f"odata.maxpagesize={page_size}" + (f", {IMMUTABLE}" if immutable else "")
    pages, items = 0, []
    while True:
        body = session.get(url, headers={"Prefer": prefer}).json()
        pages += 1
        items += body["value"]
        if "@odata.deltaLink" in body:
            return pages, items, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]
