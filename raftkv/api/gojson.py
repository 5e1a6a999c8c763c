"""Go's ``encoding/json`` and ``encoding/base64`` error behaviour, for exact error messages.

etcd's gateway decodes request bodies with Go's ``json.Decoder`` and golang/protobuf's jsonpb,
so a malformed body is answered with Go's own error text (``unexpected EOF``, ``invalid
character 'x' looking for beginning of value``, ``illegal base64 data at input byte 3``). The
happy path parses with Python's C ``json`` module; only when it fails (or a bytes field is not
canonical base64) do the slow, exact ports below run to find Go's message.

Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import binascii
import json

__all__ = [
    "FloatLit",
    "GoJSONError",
    "decode_first_value",
    "fast_decode",
    "go_b64decode",
    "go_quote",
    "go_syntax_error",
    "unmarshal_error_of_text",
]


class GoJSONError(ValueError):
    """A decoding failure carrying Go's exact error text."""


class FloatLit(str):
    """A JSON number with a fraction or exponent, kept as its literal text (as Go reports it)."""

    __slots__ = ()


def _reject_constant(name: str) -> None:
    raise ValueError(name)


_decoder = json.JSONDecoder(parse_float=FloatLit, parse_constant=_reject_constant)
_raw_decode = _decoder.raw_decode
fast_decode = _decoder.decode  # the whole text as one value (ValueError otherwise)
_WS = " \t\n\r"


def decode_first_value(text: str, start: int = 0) -> tuple[bool, object, int]:
    """Decode the first JSON value of ``text[start:]`` as Go's ``json.Decoder.Decode`` does.

    Returns ``(found, value, end)``: ``found`` is False when only whitespace is left (Go's
    ``io.EOF``); ``end`` is the index after the value. Anything after it is left alone.
    Raises ``GoJSONError`` (``unexpected EOF`` when the value is cut short).
    """
    i = start
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    if i == n:
        return False, None, n
    try:
        value, end = _raw_decode(text, i)
    except ValueError:
        raise GoJSONError(go_syntax_error(text, i, stream=True)) from None
    except RecursionError:
        # Go nests up to 10000 levels; Python's parser gives up far earlier
        raise GoJSONError("exceeded max depth") from None
    # Go's decoder needs one byte after a scalar to see where it ends: it must be whitespace.
    if end < n and text[i] not in "{[" and text[end] not in _WS:
        raise GoJSONError(str(_err(text[end], "after top-level value")))
    return True, value, end


# --- Go's scanner, as a small state machine (error path only) ----------------------------------


def _quote_char(c: str) -> str:
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    return "'" + go_quote(c)[1:-1] + "'"


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote`` (``%q``) for the characters etcd's messages can contain."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif ch == "\ufffd" or (0x80 <= o < 0xA0):
            out.append(f"\\u{o:04x}" if o > 0xFF or o >= 0x80 else ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class _Syntax(Exception):
    pass


def _err(c: str, context: str) -> _Syntax:
    return _Syntax(f"invalid character {_quote_char(c)} {context}")


def go_syntax_error(text: str, start: int = 0, *, stream: bool) -> str:
    """Go's error for the first JSON value in ``text[start:]``, which Python failed to parse.

    ``stream``: as ``json.Decoder`` (truncation is ``unexpected EOF``; text after the value is
    ignored) rather than ``json.Unmarshal`` (``unexpected end of JSON input``; text after the
    value is ``invalid character ... after top-level value``).
    """
    try:
        end = _scan_value(text, start)
    except _Syntax as e:
        return str(e)
    except IndexError:
        return "unexpected EOF" if stream else "unexpected end of JSON input"
    except RecursionError:
        return "exceeded max depth"
    if not stream:
        n = len(text)
        while end < n:
            if text[end] not in _WS:
                return str(_err(text[end], "after top-level value"))
            end += 1
    return "unexpected EOF" if stream else "unexpected end of JSON input"


def _skip_ws(text: str, i: int) -> int:
    while text[i] in _WS:  # IndexError at the end: truncated input
        i += 1
    return i


def _scan_value(text: str, i: int) -> int:
    """Scan one value starting at text[i] (after whitespace); return the index after it."""
    i = _skip_ws(text, i)
    c = text[i]
    if c == "{":
        i = _skip_ws(text, i + 1)
        if text[i] == "}":
            return i + 1
        while True:
            if text[i] != '"':
                raise _err(text[i], "looking for beginning of object key string")
            i = _scan_string(text, i)
            i = _skip_ws(text, i)
            if text[i] != ":":
                raise _err(text[i], "after object key")
            i = _scan_value(text, i + 1)
            i = _skip_ws(text, i)
            if text[i] == ",":
                i = _skip_ws(text, i + 1)
                continue
            if text[i] == "}":
                return i + 1
            raise _err(text[i], "after object key:value pair")
    if c == "[":
        i = _skip_ws(text, i + 1)
        if text[i] == "]":
            return i + 1
        while True:
            i = _scan_value(text, i)
            i = _skip_ws(text, i)
            if text[i] == ",":
                i += 1
                continue
            if text[i] == "]":
                return i + 1
            raise _err(text[i], "after array element")
    if c == '"':
        return _scan_string(text, i)
    if c == "-" or "0" <= c <= "9":
        return _scan_number(text, i)
    for lit in ("true", "false", "null"):
        if c == lit[0]:
            for k in range(1, len(lit)):
                ch = text[i + k]
                if ch != lit[k]:
                    raise _err(ch, f"in literal {lit} (expecting {_quote_char(lit[k])})")
            return i + len(lit)
    raise _err(c, "looking for beginning of value")


_HEX = "0123456789abcdefABCDEF"


def _scan_string(text: str, i: int) -> int:
    i += 1
    while True:
        c = text[i]
        if c == '"':
            return i + 1
        if c == "\\":
            i += 1
            c = text[i]
            if c in 'bfnrt\\/"':
                i += 1
            elif c == "u":
                for _ in range(4):
                    i += 1
                    if text[i] not in _HEX:
                        raise _err(text[i], "in \\u hexadecimal character escape")
                i += 1
            else:
                raise _err(c, "in string escape code")
            continue
        if c < " ":
            raise _err(c, "in string literal")
        i += 1


def _scan_number(text: str, i: int) -> int:
    n = len(text)
    if text[i] == "-":
        i += 1
        c = text[i]
        if not ("0" <= c <= "9"):
            raise _err(c, "in numeric literal")
    if text[i] == "0":
        i += 1
    else:
        while i < n and "0" <= text[i] <= "9":
            i += 1
    if i < n and text[i] == ".":
        i += 1
        c = text[i]
        if not ("0" <= c <= "9"):
            raise _err(c, "after decimal point in numeric literal")
        while i < n and "0" <= text[i] <= "9":
            i += 1
    if i < n and text[i] in "eE":
        i += 1
        c = text[i]
        if c in "+-":
            i += 1
            c = text[i]
        if not ("0" <= c <= "9"):
            raise _err(c, "in exponent of numeric literal")
        while i < n and "0" <= text[i] <= "9":
            i += 1
    return i


def unmarshal_error_of_text(text: str) -> str | None:
    """Go's ``json.Unmarshal`` syntax error for ``text``, or None when it is valid JSON."""
    try:
        end = _scan_value(text, 0)
    except _Syntax as e:
        return str(e)
    except IndexError:
        return "unexpected end of JSON input"
    except RecursionError:
        return "exceeded max depth"
    n = len(text)
    while end < n:
        if text[end] not in _WS:
            return str(_err(text[end], "after top-level value"))
        end += 1
    return None


# --- base64 (Go's StdEncoding, padded) ---------------------------------------------------------

_a2b = binascii.a2b_base64
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def go_b64decode(s: str) -> bytes:
    """Decode as Go's ``base64.StdEncoding.Decode``; errors carry Go's message."""
    try:
        # strict mode accepts a subset of what Go accepts (no \r\n), so success is final
        return _a2b(s, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    _go_b64_check(s)
    # Valid for Go (it skips \r and \n): decode what is left.
    return binascii.a2b_base64(s.replace("\n", "").replace("\r", ""))


def _go_b64_check(src: str) -> None:
    """Raise GoJSONError with Go's CorruptInputError offset, if Go would reject ``src``."""
    n = len(src)
    si = 0
    while True:
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return
                raise GoJSONError(f"illegal base64 data at input byte {si - j}")
            c = src[si]
            si += 1
            if c in _B64_ALPHABET:
                j += 1
                continue
            if c in "\r\n":
                continue
            if c != "=":
                raise GoJSONError(f"illegal base64 data at input byte {si - 1}")
            # padding
            if j in (0, 1):
                raise GoJSONError(f"illegal base64 data at input byte {si - 1}")
            if j == 2:
                while si < n and src[si] in "\r\n":
                    si += 1
                if si == n:
                    raise GoJSONError(f"illegal base64 data at input byte {n}")
                if src[si] != "=":
                    raise GoJSONError(f"illegal base64 data at input byte {si - 1}")
                si += 1
            while si < n and src[si] in "\r\n":
                si += 1
            if si < n:
                raise GoJSONError(f"illegal base64 data at input byte {si}")
            return
