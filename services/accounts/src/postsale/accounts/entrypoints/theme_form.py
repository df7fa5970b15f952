"""The theme editor's form: every `Theme` setting as a field a person fills in, read back into a
`Theme` with a sentence per mistake, kept minimal (a colour the seller left untouched stays unset,
so it keeps following the background), and corrected when its text would be unreadable. Pure
functions: no database, no request."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from postsale.runtime.theme import (DEFAULT_BACKGROUND, FONTS, MIN_LARGE_TEXT_CONTRAST, MIN_TEXT_CONTRAST, Theme,
                                    contrast, resolved)

# The colours, in the words of the page, keyed by the name `resolved` gives them.
COLOURS: tuple[tuple[str, str, str], ...] = (
    ("background_color", "background", "Page background"),
    ("heading_color", "heading", "Headings"),
    ("body_color", "body", "Labels and text"),
    ("placeholder_color", "placeholder", "Placeholders in fields"),
    ("button_background_color", "button_background", "Buttons (an outline button's label and border)"),
    ("button_text_color", "button_text", "Button labels (solid buttons)"),
)
FONT_LABELS = {"system": "System (the device's own)", "sans-serif": "Sans-serif (Helvetica, Arial)",
               "serif": "Serif (Georgia)", "rounded": "Rounded (Trebuchet)", "monospace": "Monospace"}
CHOICE_LABELS: dict[str, dict[str, str]] = {
    "heading_font": FONT_LABELS, "body_font": FONT_LABELS,
    "button_width": {"full": "Full width", "auto": "As wide as its label"},
    "button_style": {"solid": "Solid", "outline": "Outline"},
    "button_size": {"small": "Small", "medium": "Medium", "large": "Large"},
}
# What the page shows for a choice left unset: choosing it keeps the setting unset.
CHOICE_DEFAULTS = {"heading_font": "system", "body_font": "system", "button_width": "full",
                   "button_style": "solid", "button_size": "medium"}
SIZE_DEFAULTS = {"button_radius": 8}  # css_variables: 8px when unset
LABELS = {
    **{field: label for field, _, label in COLOURS},
    "heading_font": "Heading font", "body_font": "Text font",
    "h1_size": "Page heading size", "h4_size": "Subheading size",
    "button_width": "Button width", "button_style": "Button style", "button_size": "Button size",
    "button_radius": "Button corner radius", "store_name": "Store name", "logo_url": "Logo address",
}
SIZES = ("h1_size", "h4_size", "button_radius")
MAX_FIELD = 2000  # the longest setting (the logo's address)


def _bounds(field: str) -> tuple[int, int]:
    metadata = Theme.model_fields[field].metadata
    return (next(m.ge for m in metadata if hasattr(m, "ge")), next(m.le for m in metadata if hasattr(m, "le")))


BOUNDS = {field: _bounds(field) for field in SIZES}
MAX_STORE_NAME = next(m.max_length for m in Theme.model_fields["store_name"].metadata if hasattr(m, "max_length"))
assert all(set(CHOICE_LABELS[f]) == set(typing.get_args(typing.get_args(Theme.model_fields[f].annotation)[0]))
           for f in CHOICE_LABELS) and set(FONT_LABELS) == set(FONTS), "the editor offers exactly the Theme's choices"


class ThemeForm(BaseModel):
    """The editor's fields as the browser sends them (text, checked here with clear sentences)."""

    background_color: str = ""
    heading_color: str = ""
    body_color: str = ""
    placeholder_color: str = ""
    button_background_color: str = ""
    button_text_color: str = ""
    heading_font: str = ""
    body_font: str = ""
    h1_size: str = ""
    h4_size: str = ""
    button_width: str = ""
    button_style: str = ""
    button_size: str = ""
    button_radius: str = ""
    store_name: str = ""
    logo_url: str = ""
    action: str = "preview"
    # The colour each unset colour field showed (hidden fields): left as shown, it stays unset.
    default_background_color: str = ""
    default_heading_color: str = ""
    default_body_color: str = ""
    default_placeholder_color: str = ""
    default_button_background_color: str = ""
    default_button_text_color: str = ""


FIELDS = tuple(name for name in ThemeForm.model_fields if name != "action" and not name.startswith("default_"))
DEFAULT_MARKERS = tuple(f"default_{field}" for field, _, _ in COLOURS)


def read(values: typing.Mapping[str, str]) -> tuple[Theme | None, list[str]]:
    """The theme the fields describe (minimal), or None and what to fix, one sentence each. A colour
    that was unset and is sent back as it was shown (its `default_` marker) stays unset, so that
    changing the background alone lets the text colours follow it, as they do through the API."""
    errors: list[str] = []
    settings: dict[str, object] = {}
    for field in FIELDS:
        raw = values.get(field) or ""
        if len(raw) > MAX_FIELD or "\x00" in raw:
            errors.append(f"{LABELS[field]}: at most {MAX_FIELD} characters, without NUL characters.")
            continue
        raw = raw.strip()
        if not raw or (field.endswith("_color") and raw.lower() == (values.get(f"default_{field}") or "").lower()):
            continue
        if field in SIZES:
            low, high = BOUNDS[field]
            if not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
                errors.append(f"{LABELS[field]}: a whole number of pixels from {low} to {high}, or empty for "
                              f"the default.")
                continue
            settings[field] = int(raw)
        elif field in CHOICE_LABELS:
            if raw not in CHOICE_LABELS[field]:
                errors.append(f"{LABELS[field]}: choose one of {', '.join(CHOICE_LABELS[field].values())}.")
                continue
            settings[field] = raw
        elif field == "store_name" and len(raw) > MAX_STORE_NAME:
            errors.append(f"{LABELS[field]}: at most {MAX_STORE_NAME} characters.")
        else:
            settings[field] = raw.lower() if field.endswith("_color") else raw
    if errors:
        return None, errors
    try:
        theme = Theme(**settings)
    except ValidationError as exc:
        return None, [f"{LABELS.get(str(e['loc'][0]), e['loc'][0])}: {e['msg'].removeprefix('Value error, ')}."
                      for e in exc.errors()]
    return minimal(theme), []


def minimal(theme: Theme) -> Theme:
    """The same look with every choice and size that equals what the page shows when it is unset
    left unset. (Colours are kept as chosen: an untouched one is never sent back, see `read`.)"""
    data = theme.model_dump()
    for field, default in {**CHOICE_DEFAULTS, **SIZE_DEFAULTS}.items():
        if data[field] == default:
            data[field] = None
    return Theme(**data)


def form_values(theme: Theme) -> dict[str, str]:
    """What each field shows for `theme`: every colour as the page shows it (a colour field always
    holds one), every choice and size as set or as its default; and the markers of the unset colours."""
    colours = resolved(theme)
    values = {field: colours[key] for field, key, _ in COLOURS}
    if theme == Theme():
        values["background_color"] = DEFAULT_BACKGROUND  # Postsale's own look, before any theme
    for field, _, _ in COLOURS:
        values[f"default_{field}"] = values[field] if getattr(theme, field) is None else ""
    for field in CHOICE_LABELS:
        values[field] = getattr(theme, field) or CHOICE_DEFAULTS[field]
    for field in SIZES:
        value = getattr(theme, field)
        values[field] = "" if value is None else str(value)
    values["store_name"] = theme.store_name or ""
    values["logo_url"] = theme.logo_url or ""
    return values


def _mix(colour: str, towards: str, share: float) -> str:
    channels = [round(int(colour[i:i + 2], 16) * (1 - share) + int(towards[i:i + 2], 16) * share) for i in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in channels)


def nearest_readable(colour: str, against: str, minimum: float) -> str:
    """`colour` darkened (or lightened, on a dark `against`) just enough to read on `against`; black or
    white reads on any colour."""
    towards = max(("#000000", "#ffffff"), key=lambda c: contrast(c, against))
    shades = (_mix(colour, towards, step / 20) for step in range(1, 21))
    return next(shade for shade in shades if contrast(shade, against) >= minimum)


@dataclass(frozen=True)
class Correction:
    label: str
    before: str
    after: str


def corrected(theme: Theme) -> tuple[Theme, list[Correction]]:
    """The theme with each colour whose text would be unreadable replaced: by its default when that
    reads well, else by the nearest shade that does. The checks are `problems`'."""
    data = theme.model_dump()
    solid = (theme.button_style or "solid") == "solid"
    checks = [("heading_color", "heading", "background", MIN_LARGE_TEXT_CONTRAST),
              ("body_color", "body", "background", MIN_TEXT_CONTRAST),
              ("placeholder_color", "placeholder", "background", MIN_TEXT_CONTRAST),
              ("button_text_color", "button_text", "button_background", MIN_TEXT_CONTRAST) if solid else
              ("button_background_color", "button_background", "background", MIN_TEXT_CONTRAST)]
    changes = []
    for field, key, against, minimum in checks:
        colours = resolved(Theme(**data))
        if contrast(colours[key], colours[against]) >= minimum:
            continue
        defaulted = resolved(Theme(**{**data, field: None}))
        if contrast(defaulted[key], defaulted[against]) >= minimum:
            data[field] = None
        else:
            data[field] = nearest_readable(colours[key], colours[against], minimum)
        changes.append(Correction(LABELS[field], colours[key], resolved(Theme(**data))[key]))
    return minimal(Theme(**data)), changes
