"""County assessment rules (issue #7 §3), versioned like routing policy (principle 7).

A rules file per county (`deploy/assessment/<county>.yaml`) is validated here and published as
`assessment.rules_published` on stream `assessment-rules-<county>` (`minqing assessment rules load`).
A period is scored under the rules version in force when the period ended (the latest published by
then; the first version for a period that ended before any), so re-scoring 2025 after 2026's rules
change reproduces 2025's figures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from minqing.http import flatten_errors
from minqing import versioned
from minqing.ledger import Ledger

# 响应率, 办结率 (closed by the handler), 承诺期限兑现率, 解决率 (solved by the resident's word), 满意率.
# Which count in the composite, and how much, is each county's choice (`weights`); Beijing's 12345
# assesses the three rates 响应率, 解决率 and 满意率.
RATES = ("response_rate", "resolution_rate", "on_time_rate", "solution_rate", "satisfaction_rate")
LEVELS = ("village", "township", "county")       # cadre levels ranked separately
_SHARE = validate.Range(min=0, max=1)


class RulesError(ValueError):
    def __init__(self, errors: Mapping[str, list[str]]):
        self.errors = dict(errors)
        lines = "\n".join(f"  {p}: {'; '.join(m)}" for p, m in sorted(self.errors.items()))
        super().__init__(f"the assessment rules have {len(self.errors)} error(s):\n{lines}")


class _Thresholds(Schema):
    """Satisfaction below which a consequence is flagged (seed 001: 对拟提拔干部…满意率随机调查，低于80%的
    实行"一票否决"; seed 004: 群众满意度低于90%的驻点干部取消年度考核评优资格，低于70%…的及时进行调整)."""
    promotion_veto = fields.Float(load_default=0.80, validate=_SHARE)
    excellence_lost = fields.Float(load_default=0.90, validate=_SHARE)
    reassignment_review = fields.Float(load_default=0.70, validate=_SHARE)


class _Quotas(Schema):
    """Seed 000: 县直部门干部每年进村入户时间不少于10天，乡镇干部…不少于30天，村级和社区干部…不少于50天;
    seed 001: 每名干部固定包联80户左右，每月登门或电话联系包联户一次 — households to contact each month."""
    visit_days_per_year = fields.Dict(keys=fields.String(validate=validate.OneOf(LEVELS)),
                                      values=fields.Integer(strict=True, validate=validate.Range(min=0, max=366)),
                                      load_default=lambda: {"county": 10, "township": 30, "village": 50})
    liaison_households_per_month = fields.Integer(load_default=80, strict=True, validate=validate.Range(min=0, max=1000))


class _Rules(Schema):
    county = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9-]{1,39}$"))
    weights = fields.Dict(keys=fields.String(validate=validate.OneOf(RATES)),
                          values=fields.Float(validate=validate.Range(min=0, max=100)),
                          load_default=lambda: {"response_rate": 1.0, "resolution_rate": 1.0, "on_time_rate": 1.0,
                                                "solution_rate": 2.0, "satisfaction_rate": 2.0})
    basically_satisfied_weight = fields.Float(load_default=1.0, validate=_SHARE)
    thresholds = fields.Nested(_Thresholds, load_default=lambda: _Thresholds().load({}))
    min_cases_to_rank = fields.Integer(load_default=5, strict=True, validate=validate.Range(min=1, max=10000))
    min_ratings_to_flag = fields.Integer(load_default=5, strict=True, validate=validate.Range(min=1, max=10000))
    top = fields.Integer(load_default=10, strict=True, validate=validate.Range(min=1, max=100))
    quotas = fields.Nested(_Quotas, load_default=lambda: _Quotas().load({}))

    @validates_schema
    def _order(self, data, **_):
        t = data["thresholds"]
        if not t["reassignment_review"] <= t["promotion_veto"] <= t["excellence_lost"]:
            raise ValidationError({"thresholds": ["must rise reassignment_review <= promotion_veto <= excellence_lost"]})
        if not any(data["weights"].values()):
            raise ValidationError({"weights": ["at least one weight must be above zero"]})


def validate_rules(raw: Any) -> dict:
    if not isinstance(raw, Mapping):
        raise RulesError({"(file)": ["must be a YAML mapping"]})
    try:
        return _Rules().load(raw)
    except ValidationError as exc:
        raise RulesError(flatten_errors(exc.messages, root="(file)")) from None


def read_rules_file(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError({"(file)": [f"cannot read {path}: {exc}"]}) from None
    return validate_rules(raw)


def publish(ledger: Ledger, rules: dict, actor: str) -> tuple[int, bool]:
    """Append `assessment.rules_published` unless the latest version is identical."""
    return versioned.publish(ledger, f"assessment-rules-{rules['county']}", "assessment.rules_published",
                             rules["county"], "rules", rules, actor)


def default_rules(county: str) -> dict:
    """The rules a county has before it publishes any: the seeds' thresholds and quotas."""
    return validate_rules({"county": county})
