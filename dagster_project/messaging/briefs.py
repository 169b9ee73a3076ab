"""Campaign briefs and the brand voice: YAML a marketer edits, validated on load.

One YAML file per playbook (`dagster_project/briefs/<playbook>.yaml`) plus
`brand_voice.yaml`. `load_briefs()` reads the folder named by
`NEXTBEST_BRIEFS_DIR` (or the shipped one) and fails with every problem at
once, each naming the file and the field path (`offers[0].percent_off`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from dagster_project.models.goals import GOAL_WINDOWS, SEED_GOALS

BRIEFS_DIR = Path(__file__).resolve().parent.parent / "briefs"
BRAND_VOICE_FILE = "brand_voice.yaml"
BRIEFS_DIR_ENV = "NEXTBEST_BRIEFS_DIR"
# Briefs of the service flows (service/*.yaml) a marketer may put in the folder to replace ours: a save
# offer answers a cancel attempt, a reply a ticket. They are read by those flows, not routed as campaigns.
SERVICE_BRIEFS = ("save_offer", "service_reply")


class BriefError(ValueError):
    """A brief or brand voice file is invalid; the message names file and field."""


class _Strict(BaseModel):
    # Unknown keys are typos a marketer wants to hear about, not silently ignore.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Audience(_Strict):
    """Who a playbook is for: segment names, customer tags and score floors (any segment matches)."""

    segments: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    min_scores: dict[str, float] = Field(default_factory=dict)


class FrequencyCap(_Strict):
    """At most `max_messages` from this playbook per customer in `per_days` days."""

    max_messages: int = Field(ge=1)
    per_days: int = Field(ge=1)


class Angle(_Strict):
    """One way into the message; the template generator has a template per angle id."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    cta: str | None = None  # the CTA this angle ends with (default: the brief's first)


class Cta(_Strict):
    """A call to action the copy may end with."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str = Field(min_length=1, pattern=r"\S")
    url: str

    @field_validator("url")
    @classmethod
    def _a_link(cls, url: str) -> str:
        """A path on the store's site, a web address or an email address: what a message may link to."""
        if not url.strip().startswith(("/", "https://", "http://", "mailto:")):
            raise ValueError(f"{url!r} is not a link a message may carry; use a path on your site "
                             "(/account/...), an https:// address or mailto:")
        return url.strip()


class PriceRule(_Strict):
    """Limits on an offer: how deep, and who qualifies."""

    max_percent_off: float = Field(default=0, ge=0, le=100)
    min_tenure_months: int = Field(default=0, ge=0)
    min_orders: int = Field(default=0, ge=0)


class Offer(_Strict):
    """An incentive the copy may mention, with the price rules it must respect."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    kind: Literal["percent_off", "free_shipping", "free_item"]
    percent_off: float = Field(default=0, ge=0, le=100)
    rules: PriceRule = Field(default_factory=PriceRule)

    @model_validator(mode="after")
    def _within_rules(self) -> "Offer":
        if self.kind == "percent_off" and self.percent_off <= 0:
            raise ValueError("a percent_off offer needs percent_off > 0")
        if self.percent_off > self.rules.max_percent_off and self.kind == "percent_off":
            raise ValueError(
                f"percent_off {self.percent_off:g} is above its rule max_percent_off "
                f"{self.rules.max_percent_off:g}"
            )
        return self


class BrandVoice(_Strict):
    """How every message sounds: tone words, limits, banned phrases, sign-off."""

    id: str
    store_name: str
    tone_words: list[str] = Field(min_length=1)
    sign_off: str
    currency_symbol: str = "$"
    max_words: int = Field(ge=20)
    max_words_brief: int = Field(ge=10)
    max_subject_chars: int = Field(ge=10)
    max_exclamations: int = Field(ge=0)
    banned_phrases: list[str] = Field(default_factory=list)
    allowed_terms: list[str] = Field(default_factory=list)


class Brief(_Strict):
    """One playbook's campaign brief."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    purpose: str
    # What the messages aim for (models/goals.py): what the uplift model learns and routing values.
    # A seed playbook may leave it out (its usual goal); a new one must name it.
    goal: str | None = Field(default=None, validate_default=True)
    channel: Literal["email", "in_portal"]
    audience: Audience
    holdout_share: float = Field(ge=0, lt=1)
    frequency_cap: FrequencyCap
    max_data_staleness_days: int = Field(ge=0)
    brand_voice: str
    angles: list[Angle] = Field(min_length=1)
    ctas: list[Cta] = Field(min_length=1)
    offers: list[Offer] = Field(default_factory=list)

    @field_validator("goal")
    @classmethod
    def _known_goal(cls, goal: str | None, info: ValidationInfo) -> str | None:
        """A known goal; left out, a seed playbook's own (`load_briefs` refuses a playbook with none)."""
        if goal is None:
            return SEED_GOALS.get(info.data.get("id", ""))
        if goal not in GOAL_WINDOWS:
            raise ValueError(f"{goal!r} is not a goal; one of {', '.join(GOAL_WINDOWS)}")
        return goal

    @property
    def goal_days(self) -> int:
        """The days after a send in which the goal counts (and the playbook's holdout stays out of it)."""
        return GOAL_WINDOWS[self.goal]

    @field_validator("angles", "ctas", "offers")
    @classmethod
    def _unique_ids(cls, items: list) -> list:
        ids = [item.id for item in items]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate ids {duplicates}")
        return items

    @model_validator(mode="after")
    def _angle_ctas_exist(self) -> "Brief":
        known = {c.id for c in self.ctas}
        for i, angle in enumerate(self.angles):
            if angle.cta is not None and angle.cta not in known:
                raise ValueError(f"angles[{i}].cta {angle.cta!r} is not one of ctas {sorted(known)}")
        return self

    def cta(self, cta_id: str) -> Cta | None:
        """The CTA with this id, or None when the brief does not allow it."""
        return next((c for c in self.ctas if c.id == cta_id), None)

    def offer(self, offer_id: str) -> Offer | None:
        """The offer with this id, or None when the brief does not allow it."""
        return next((o for o in self.offers if o.id == offer_id), None)


class BriefSet(BaseModel):
    """Every playbook brief in a folder, and the brand voice they share."""

    model_config = ConfigDict(frozen=True)

    folder: Path
    brand_voice: BrandVoice
    playbooks: dict[str, Brief]
    # The service briefs a marketer put in the folder (`SERVICE_BRIEFS`): not campaigns, never routed.
    service: dict[str, Brief] = {}

    def get(self, playbook_id: str) -> Brief:
        """The brief for a playbook; a clear error when no file defines it."""
        try:
            return self.playbooks[playbook_id]
        except KeyError:
            raise BriefError(
                f"{self.folder}: no brief for playbook {playbook_id!r} "
                f"(have: {', '.join(sorted(self.playbooks))})"
            ) from None


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def parse_yaml(path: Path, model: type[BaseModel]) -> BaseModel:
    """One YAML file validated as `model` (a Brief, BrandVoice, ...); BriefError names file and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise BriefError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise BriefError(f"{path}: expected a mapping of fields at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [f"{path}: {_field_path(e['loc'])}: {e['msg']}" for e in error.errors()]
        raise BriefError("\n".join(problems)) from None


def briefs_folder(folder: str | Path | None = None) -> Path:
    """The briefs folder: the argument, else `NEXTBEST_BRIEFS_DIR`, else the shipped briefs."""
    chosen = folder or os.environ.get(BRIEFS_DIR_ENV) or BRIEFS_DIR
    return Path(chosen).expanduser().resolve()


def load_briefs(folder: str | Path | None = None) -> BriefSet:
    """Load and validate every brief and the brand voice; all problems reported together."""
    root = briefs_folder(folder)
    if not root.is_dir():
        raise BriefError(f"{root}: briefs folder does not exist (set {BRIEFS_DIR_ENV} or pass a folder)")
    voice_path = root / BRAND_VOICE_FILE
    if not voice_path.exists():
        raise BriefError(f"{voice_path}: missing; every briefs folder needs a brand voice")
    problems: list[str] = []
    voice: BrandVoice | None = None
    try:
        voice = parse_yaml(voice_path, BrandVoice)  # type: ignore[assignment]
    except BriefError as error:
        problems.append(str(error))
    playbooks: dict[str, Brief] = {}
    service: dict[str, Brief] = {}
    for path in sorted(root.glob("*.y*ml")):
        if path.name == BRAND_VOICE_FILE or path.suffix not in (".yaml", ".yml"):
            continue
        try:
            brief: Brief = parse_yaml(path, Brief)  # type: ignore[assignment]
        except BriefError as error:
            problems.append(str(error))
            continue
        if brief.id != path.stem:
            problems.append(f"{path}: id: must match the file name ({path.stem!r}), got {brief.id!r}")
        if brief.id in SERVICE_BRIEFS:
            service[brief.id] = brief
            continue
        if brief.goal is None:
            problems.append(f"{path}: goal: a new playbook needs a goal: what its messages aim for, measured "
                            f"against its holdout; one of {', '.join(GOAL_WINDOWS)}")
        if voice is not None and brief.brand_voice != voice.id:
            problems.append(f"{path}: brand_voice: {brief.brand_voice!r} is not {voice_path.name}'s id {voice.id!r}")
        playbooks[brief.id] = brief
    if not playbooks and not problems:
        problems.append(f"{root}: no playbook briefs (*.yaml) found")
    if problems:
        raise BriefError("\n".join(problems))
    return BriefSet(folder=root, brand_voice=voice, playbooks=playbooks, service=service)
