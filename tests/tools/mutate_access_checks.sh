#!/bin/bash
# Needs the test PostgreSQL/RabbitMQ like `make test` (the e2e fixtures start them). ~4 minutes.
# Each mutation removes one access check; the access-control tests must fail for every one.
cd "$(dirname "$0")/../.."
run() {
  local file=$1 from=$2 to=$3
  cp $file /tmp/mut.bak
  python3 -c "import sys; p,a,b=sys.argv[1:4]; s=open(p).read(); assert a in s, a; open(p,'w').write(s.replace(a,b,1))" "$file" "$from" "$to" || { echo "NO MATCH: $from"; return 1; }
  if timeout 300 .venv/bin/python -m pytest -q -x tests/e2e/test_access_control.py >/dev/null 2>&1; then echo "SURVIVED: $from"; else echo "caught:   $from"; fi
  cp /tmp/mut.bak $file
}
run minqing/access.py 'if county is not None and county != principal.county:' 'if False:'
run minqing/access.py 'if principal.role not in allowed:' 'if False:'
run minqing/access.py '    if case.county != principal.county:
        return False' '    pass'
run minqing/access.py 'return principal.unit is not None and principal.unit in case.units_seen' 'return True'
run minqing/access.py 'return scope is None or (case.location or {}).get("township") in scope' 'return True'
run minqing/access.py 'and case.unit == principal.unit)' ')'
run minqing/endpoints.py '                access.authorize(principal, action)' '                pass'
run minqing/access.py 'if row.revoked_at is not None or' 'if'
run services/intake/service.py 'access.record_access(conn, principal, case.county, case_id, "case.read")' 'pass'
run services/assessment/service.py '        if principal.role == "cadre" and cadre != principal.cadre:' '        if False:'
run services/assessment/service.py 'own = principal.cadre if principal.role == "cadre" else None' 'own = None'
run services/notify/subscriptions.py '                                                         subscriptions_table.c.county == county,' ''
run services/intake/service.py '        access.authorize(principal, "case.report", report["county"])' '        pass'
run services/notify/service.py 'list_outbox(conn, principal.county, status)' 'list_outbox(conn, "longjiang", status)'
