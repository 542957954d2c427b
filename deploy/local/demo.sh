#!/usr/bin/env bash
# `make demo`: a stack on the demo clock, filled with a month of 龙江县 through its public API, left
# running in the background (docs/simulate.md). Its state lives in MINQING_RUN_DIR (default .run-demo/),
# apart from `make run`'s real-time ledger in .run/: a demo ledger carries clock events and must never
# be mixed with a real one.
set -euo pipefail
cd "$(dirname "$0")/../.."

export MINQING_RUN_DIR="${MINQING_RUN_DIR:-$PWD/.run-demo}"
export MINQING_CLOCK=demo
MONTH="${MINQING_DEMO_MONTH:-2026-11}"                  # the month to fill
DAYS="${MINQING_DEMO_DAYS:-$(.venv/bin/python -c "import calendar,sys; y,m=map(int,sys.argv[1].split('-')); print(calendar.monthrange(y,m)[1])" "$MONTH")}"
SEED="${MINQING_DEMO_SEED:-2026}"
export MINQING_CLOCK_START="${MINQING_CLOCK_START:-$(.venv/bin/python -c "import datetime,sys; d=datetime.date.fromisoformat(sys.argv[1]+'-01')-datetime.timedelta(days=1); print(f'{d}T20:00+08:00')" "$MONTH")}"
export MINQING_CLOCK_RATE="${MINQING_CLOCK_RATE:-1}"
export MINQING_SWEEP_SECONDS="${MINQING_SWEEP_SECONDS:-0.5}"
export MINQING_NOTIFY_SECONDS="${MINQING_NOTIFY_SECONDS:-0.3}"
export MINQING_FOLLOW_SECONDS="${MINQING_FOLLOW_SECONDS:-0.25}"
PORT="${MINQING_HTTP_PORT:-8000}"

mkdir -p "$MINQING_RUN_DIR"
OUT="$MINQING_RUN_DIR/run.out"
if [ -f "$MINQING_RUN_DIR/run.pid" ] && kill -0 "$(cat "$MINQING_RUN_DIR/run.pid")" 2>/dev/null; then
  echo "a demo stack is already running (pid $(cat "$MINQING_RUN_DIR/run.pid")); stop it with: kill $(cat "$MINQING_RUN_DIR/run.pid")" >&2
  exit 1
fi
: > "$OUT"
nohup .venv/bin/minqing run >"$OUT" 2>&1 &
echo $! > "$MINQING_RUN_DIR/run.pid"
echo "starting the stack on the demo clock (log: $OUT) …"
for _ in $(seq 1 240); do
  grep -q "Minqing is running" "$OUT" && break
  if ! kill -0 "$(cat "$MINQING_RUN_DIR/run.pid")" 2>/dev/null; then tail -30 "$OUT" >&2; exit 1; fi
  sleep 0.5
done
grep -q "Minqing is running" "$OUT" || { echo "the stack did not start; see $OUT" >&2; exit 1; }

if ! .venv/bin/minqing simulate --county longjiang --start "$MONTH-01" --days "$DAYS" --seed "$SEED" \
  --json "$MINQING_RUN_DIR/simulation.json"; then
  echo "the simulation failed; the stack is still running (logs: $MINQING_RUN_DIR/logs/); stop it with: kill $(cat "$MINQING_RUN_DIR/run.pid")" >&2
  exit 1
fi

# The demo tokens expire in demo time: renew them at the clock's new date.
.venv/bin/python -c "
from minqing import config
from minqing.db import make_engine
from minqing.shell.demo import demo_tokens
settings = config.load()
demo_tokens(make_engine(settings.database_url), settings.run_dir)"

cat <<TEXT

The demo stack is running in the background with $DAYS days of 龙江县 ($MONTH), on the demo clock:
  API             http://127.0.0.1:$PORT/health   (tokens: $MINQING_RUN_DIR/demo-tokens.json)
  scorecards      http://127.0.0.1:$PORT/api/v1/assessment/longjiang/rankings?period=$MONTH
  the report      MINQING_RUN_DIR=$MINQING_RUN_DIR .venv/bin/minqing report --county longjiang --period $MONTH
  the clock       MINQING_RUN_DIR=$MINQING_RUN_DIR MINQING_CLOCK=demo .venv/bin/minqing clock show   (advance 3d moves it on)
  the history     MINQING_RUN_DIR=$MINQING_RUN_DIR .venv/bin/minqing events tail
  logs            $MINQING_RUN_DIR/logs/ and $OUT
  stop it         kill $(cat "$MINQING_RUN_DIR/run.pid")
TEXT
