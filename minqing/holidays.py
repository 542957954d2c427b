"""A year's calendar file from a maintained source (issue #18.3): the `chinesecalendar` package, which
follows the State Council's yearly notice (国务院办公厅关于部分节假日安排的通知).

The calendar stays inside the versioned county policy (principle 7: a replay needs the calendar a
deadline was decided on): `minqing calendar build YEAR --out deploy/calendars/cn-YEAR.yaml` writes
the file that counties include (`calendar.include`), and `minqing county load` publishes it. A year
the package does not know is refused by name — never written as "weekends only".
"""
from __future__ import annotations

from datetime import date


class UnknownYear(Exception):
    """The source has no holiday arrangement for this year (not yet announced, or not yet packaged)."""


def _source():
    import chinese_calendar
    return chinese_calendar


def source_version() -> str:
    return getattr(_source(), "__version__", "unknown")


def known_years() -> range:
    cc = _source()
    years = [d.year for d in cc.holidays]
    return range(min(years), max(years) + 1)


def year_calendar(year: int) -> dict:
    """{covers, holidays, workdays} of `year`: the days off (weekends inside a holiday included, as
    the notice lists them) and the make-up working days (调休上班)."""
    cc = _source()
    known = known_years()
    if year not in known:
        raise UnknownYear(f"chinesecalendar {source_version()} has no holiday arrangement for {year} (it knows "
                          f"{known.start}–{known.stop - 1}); the State Council announces a year's holidays in the "
                          f"autumn before — upgrade the package once a release includes {year}, or write "
                          f"deploy/calendars/cn-{year}.yaml by hand from the notice")
    holidays = sorted(d for d in cc.holidays if d.year == year)
    workdays = sorted(d for d in cc.workdays if d.year == year)
    return {"covers": [year], "holidays": holidays, "workdays": workdays}


def _names(days: list[date], table: dict) -> str:
    """The holidays' Chinese names in order (元旦、春节…): the package stores the English ones."""
    cc = _source()
    names = []
    for day in days:
        try:
            name = cc.Holiday(table[day]).chinese
        except ValueError:
            name = str(table[day])
        if name not in names:
            names.append(name)
    return "、".join(names)


def render_yaml(year: int) -> str:
    """The calendar file of `year`, in the form of deploy/calendars/cn-2026.yaml."""
    cc = _source()
    cal = year_calendar(year)
    days = lambda ds: "[" + ", ".join(d.isoformat() for d in ds) + "]"      # noqa: E731
    return (f"# The days off and make-up working days (调休) of {year}, built by `minqing calendar build {year}`\n"
            f"# from chinesecalendar {source_version()} (the State Council's notice for {year}:\n"
            f"# {_names(cal['holidays'], cc.holidays)}). Counties include this file from their policy\n"
            f"# (`calendar.include`); `minqing county load` merges it into the published policy.\n"
            f"covers: [{year}]\n"
            f"holidays: {days(cal['holidays'])}\n"
            f"workdays: {days(cal['workdays'])}   # 调休上班\n")
