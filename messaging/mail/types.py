"""One message shape for Gmail and Outlook: what every provider adapter returns."""

from dataclasses import asdict, dataclass, field
from datetime import datetime


@dataclass
class Attachment:
    id: str
    filename: str
    mime_type: str
    size: int
    # Gmail: the file's MIME part (partId). Gmail's attachment id changes between reads of a message and lapses;
    # the part is how the hub finds the file again in a fresh read (providers.gmail.attachment). Not shown.
    part_id: str = ""


@dataclass
class Message:
    id: str
    thread_id: str
    subject: str = ""
    sender: dict = field(default_factory=dict)  # {"name", "email"}
    to: list = field(default_factory=list)
    cc: list = field(default_factory=list)
    bcc: list = field(default_factory=list)
    snippet: str = ""
    date: datetime | None = None
    labels: list = field(default_factory=list)  # Gmail label ids; Graph folder and categories
    unread: bool = False
    starred: bool = False
    attachments: list = field(default_factory=list)  # [Attachment]
    # Only on a single-message read (bodies are fetched on demand).
    text: str | None = None
    html: str | None = None
    # Message-ID / References / In-Reply-To, for replies.
    headers: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    def as_dict(self, *, staff=False):
        data = asdict(self)
        data["date"] = self.date.isoformat() if self.date else None
        for attachment in data["attachments"]:
            attachment.pop("part_id", None)
        if not staff:
            data.pop("raw")
        return data


@dataclass
class Page:
    messages: list
    next_page_token: str | None = None


@dataclass
class Label:
    id: str
    name: str
    type: str = "user"  # system / user


@dataclass
class Draft:
    id: str
    message: Message | None = None

    def as_dict(self, *, staff=False):
        return {"id": self.id, "message": self.message.as_dict(staff=staff) if self.message else None}


@dataclass
class OutgoingAttachment:
    """A file to send: `file` is a seekable binary file (an upload spooled to disk, or BytesIO for base64 input)."""

    filename: str
    mime_type: str
    size: int
    file: object

    def read(self):
        self.file.seek(0)
        return self.file.read()

    def chunks(self, size):
        """(offset, bytes) pieces of at most `size` bytes, from the start."""
        self.file.seek(0)
        offset = 0
        while piece := self.file.read(size):
            yield offset, piece
            offset += len(piece)


@dataclass
class Outgoing:
    """A message to send or save as a draft, validated."""

    to: list
    cc: list = field(default_factory=list)
    bcc: list = field(default_factory=list)
    subject: str = ""
    text: str = ""
    html: str = ""
    attachments: list = field(default_factory=list)  # [OutgoingAttachment]
    reply_to_message_id: str = ""


@dataclass
class SyncResult:
    upserted: list = field(default_factory=list)  # [Message]
    deleted: list = field(default_factory=list)  # [external id]
    cursor: str = ""  # Gmail historyId / Graph deltaLink
    full: bool = False
    folder_id: str = ""  # Graph: the id of the folder the delta follows (the inbox), when an item named it
