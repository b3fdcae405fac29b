"""Reading a ``multipart/form-data`` body (image edits), with python-multipart, the parser Starlette uses.

The body is read whole within the body limits of :mod:`pisces.pipeline.body` (API Gateway passes a
multipart body base64-encoded, within Lambda's 6 MB payload; the adapter decodes it), then parsed
into its fields in order: text fields as strings, files as :class:`FilePart` (name, filename, type,
bytes). A body that is not multipart, has no boundary or does not parse is a 400.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from pisces.errors import PiscesError
from pisces.pipeline.body import read_body

MAX_FIELDS = 64  # parts in one form: more is no image edit
MAX_TEXT_FIELD = 64 * 1024  # bytes of one text field (a prompt is at most 32,000 characters)
LAMBDA_HINT = " A multipart body (images included) must fit the Lambda request payload limit: send smaller images."


@dataclass(slots=True)
class FilePart:
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Form:
    """A parsed form: ``fields`` in the order sent, each name with every value it was given."""

    fields: list[tuple[str, str | FilePart]] = field(default_factory=list)

    def text(self, name: str) -> str | None:
        for n, v in self.fields:
            if n == name:
                if isinstance(v, FilePart):
                    return v.data.decode("utf-8", "replace")
                return v
        return None

    def files(self, *names: str) -> list[FilePart]:
        return [v for n, v in self.fields if n in names and isinstance(v, FilePart)]

    def names(self) -> list[str]:
        return list(dict.fromkeys(n for n, _ in self.fields))


def _invalid(message: str) -> PiscesError:
    return PiscesError("invalid_request", message)


def parse_form(content_type: str, body: bytes) -> Form:
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise _invalid("This endpoint takes multipart/form-data (the image files and the other fields).")
    boundary = params.get(b"boundary")
    if not boundary:
        raise _invalid("The multipart/form-data Content-Type has no boundary.")
    form = Form()
    state: dict[str, object] = {}
    headers: dict[bytes, bytes] = {}
    name_buf, value_buf, data = bytearray(), bytearray(), bytearray()

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_header_field(b: bytes, start: int, end: int) -> None:
        name_buf.extend(b[start:end])

    def on_header_value(b: bytes, start: int, end: int) -> None:
        value_buf.extend(b[start:end])

    def on_header_end() -> None:
        headers[bytes(name_buf).lower()] = bytes(value_buf)
        name_buf.clear()
        value_buf.clear()

    def on_part_data(b: bytes, start: int, end: int) -> None:
        data.extend(b[start:end])

    def on_part_end() -> None:
        if len(form.fields) >= MAX_FIELDS:
            state["error"] = f"The form has more than {MAX_FIELDS} fields."
            return
        disposition, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            state["error"] = "A multipart part has no Content-Disposition: form-data with a name."
            return
        key = name.decode("utf-8", "replace")
        if b"filename" in options:
            filename = options[b"filename"].decode("utf-8", "replace") or "file"
            ctype = headers.get(b"content-type", b"application/octet-stream").decode("latin-1")
            form.fields.append((key, FilePart(filename, ctype, bytes(data))))
        else:
            if len(data) > MAX_TEXT_FIELD:
                state["error"] = f"The form field {key!r} is longer than {MAX_TEXT_FIELD} bytes."
                return
            try:
                form.fields.append((key, bytes(data).decode("utf-8")))
            except UnicodeDecodeError:
                state["error"] = f"The form field {key!r} is not UTF-8 text."

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                                        "on_header_value": on_header_value, "on_header_end": on_header_end,
                                        "on_part_data": on_part_data, "on_part_end": on_part_end})  # fmt: skip
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:  # python-multipart's MultipartParseError and friends: the client's bytes
        raise _invalid(f"The multipart/form-data body could not be parsed ({type(e).__name__}).") from None
    if "error" in state:
        raise _invalid(str(state["error"]))
    if not form.fields:
        raise _invalid("The multipart/form-data body has no fields.")
    return form


async def read_form(headers: Mapping[str, str], chunks: AsyncIterable[bytes], limit: int) -> Form:
    body = await read_body(headers, chunks, limit, LAMBDA_HINT)
    return parse_form(headers.get("content-type", ""), body)
