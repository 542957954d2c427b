"""`minqing simulate` (issue #17.2): a county's month or year of traffic, driven through a running
stack's public HTTP API while the demo clock moves day by day. Part of the application shell: the
kernel never imports it (tests/unit/test_simulate_traffic.py checks). See docs/simulate.md.

  traffic.py   what residents, cadres, supervisors and operators do, drawn from one seeded generator
  api.py       the HTTP client (retries rate limits and brief unavailability)
  driver.py    the sessions of each simulated day: reports, cadre work, chases, 回访, field visits
  summary.py   the figures at the end, counted from the recorded events
"""
