"""MIME for both providers: Gmail sends raw RFC 5322, and Graph accepts the same as base64 MIME.

A reply carries `In-Reply-To: <original Message-ID>` and `References:` the
original's References followed by its Message-ID (RFC 5322 3.6.4), which is
what both Gmail and Outlook thread on; the subject gets one "Re: ".
"""

import email.utils
from email import policy
from email.message import EmailMessage


def reply_headers(original_headers):
    message_id = original_headers.get("message-id", "")
    if not message_id:
        return {}
    # The original's headers are the sender's: one line each, or the email package refuses them (breaks_line).
    message_id = one_line(message_id)
    references = (one_line(original_headers.get("references", "")) + " " + message_id).strip()
    return {"In-Reply-To": message_id, "References": references}


def breaks_line(value):
    """Whether `value` holds a line break as Python's email package counts them (str.splitlines: CR and LF, but
    also VT, FF, the file/group/record separators, NEL, U+2028 and U+2029): it refuses such a header value with
    a ValueError."""
    return "".join(value.splitlines()) != value


def one_line(value):
    return " ".join(value.splitlines())


def reply_subject(subject):
    # The original's subject is the sender's words, decoded from any encoded-words: it may hold a line break.
    subject = one_line(subject)
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def new_message_id():
    return email.utils.make_msgid(domain="hub.local")


def build(outgoing, *, sender="", reply_to=None, attachments=True, message_id=""):
    """An EmailMessage for `outgoing` (types.Outgoing); `reply_to` is the original's headers when replying.

    attachments=False leaves the files out (Graph then adds them to the draft one by one: upload sessions).
    `message_id`: the send's stable Message-ID (a retry looks it up in Sent), else a new one.
    """
    msg = EmailMessage(policy=policy.SMTP)
    if sender:
        msg["From"] = sender
    msg["To"] = ", ".join(outgoing.to)
    if outgoing.cc:
        msg["Cc"] = ", ".join(outgoing.cc)
    if outgoing.bcc:
        # Kept in the MIME we hand to the provider: both strip Bcc when delivering and use it as a recipient.
        msg["Bcc"] = ", ".join(outgoing.bcc)
    msg["Subject"] = outgoing.subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = message_id or new_message_id()
    for name, value in (reply_to or {}).items():
        msg[name] = value
    msg.set_content(outgoing.text or "")
    if outgoing.html:
        msg.add_alternative(outgoing.html, subtype="html")
    for item in outgoing.attachments if attachments else ():
        maintype, _, subtype = (item.mime_type or "application/octet-stream").partition("/")
        msg.add_attachment(item.read(), maintype=maintype, subtype=subtype or "octet-stream", filename=item.filename)
    return msg


def parse(raw):
    """Parse RFC 5322 bytes back (tests, and providers that hand back raw MIME)."""
    return email.message_from_bytes(raw, policy=policy.default)


def address(value):
    """{"name", "email"} from one header value."""
    name, addr = email.utils.parseaddr(value or "")
    return {"name": name, "email": addr}


def addresses(value):
    return [{"name": n, "email": a} for n, a in email.utils.getaddresses([value or ""]) if a]
