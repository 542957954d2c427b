"""Recognising and masking personal data (DESIGN principle 8).

One place defines what a raw phone number, identity number or e-mail address looks like; intake and
routing mask free text with it, and the event contract refuses any event that still carries one.
"""
from __future__ import annotations

import re

# Full-width digits, letters and separators (what Chinese input methods often type) read as ASCII.
_WIDE = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)},
                       **{chr(0xFF21 + i): chr(0x41 + i) for i in range(26)},
                       **{chr(0xFF41 + i): chr(0x61 + i) for i in range(26)}, "\uFF0B": "+", "\uFF0D": "-",
                       "\u3000": " ", "\uFF0E": ".", "\uFF20": "@"})
# Mainland mobile numbers (11 digits starting 13-19), optionally written with +86/86 and separators.
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[\s.-]?)?(1[3-9]\d)[\s.-]?(\d{4})[\s.-]?(\d{4})(?!\d)")
# Landlines with an area code, e.g. 0452-5612345 or 04525612345.
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})[\s.-]?(\d{7,8})(?!\d)")
# E-mail addresses (ASCII local part, a dotted domain), e.g. zhang.san@example.com. The masked form
# `z***@example.com` (as notify masks a contact's address) no longer matches: `*` is not in the class.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9][A-Za-z0-9._%+-]*)@"
                    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,})")
# 18-character resident identity numbers.
_ID_NUMBER = re.compile(r"(?<![\dXx])(\d{6})(\d{8})(\d{3}[\dXx])(?![\dXx])")


def mask_phone(phone: str) -> str:
    """`13812345678` → `138****5678`; anything else keeps at most its last four digits."""
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) == 11 and digits[0] == "1":
        return f"{digits[:3]}****{digits[-4:]}"
    return "****" + digits[-4:] if len(digits) >= 4 else "****"


def mask_name(name: str) -> str:
    """`张三丰` → `张**`: the family name only, as Chinese public notices do."""
    name = name.strip()
    if not name:
        return ""
    return name[0] + "*" * max(1, len(name) - 1)


def mask_free_text(text: str) -> str:
    """Mask phone numbers, identity numbers and e-mail addresses typed into a summary or a note."""
    text = text.translate(_WIDE)
    text = _EMAIL.sub(lambda m: f"{m.group(1)[0]}***@{m.group(2)}", text)
    text = _ID_NUMBER.sub(lambda m: m.group(1)[:2] + "*" * 14 + m.group(3)[-2:], text)
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    text = _LANDLINE.sub(lambda m: f"{m.group(1)}-****{m.group(2)[-2:]}", text)
    return text


# Identifiers are not personal data, but a UUID's hex groups can look like a phone number
# ("…-b198-0221-6623…"); they are blanked out before looking.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def find_raw_personal_data(text: str) -> str | None:
    """The kind of raw personal data found in `text`, or None."""
    text = _UUID.sub(" ", text.translate(_WIDE))
    if _MOBILE.search(text):
        return "a raw mobile phone number"
    if _ID_NUMBER.search(text):
        return "a raw identity number"
    if _LANDLINE.search(text):
        return "a raw landline number"
    if _EMAIL.search(text):
        return "a raw e-mail address"
    return None
