# Sourced by deploy/local/install.sh: each install or build step as one line for a person on a
# terminal, or the plain log stream otherwise.
#   steps_begin PREFIX TITLE TOTAL   PREFIX names the plain lines ([install]); TITLE heads the view
#   step LABEL [--count REGEX [--of N] [--unit WORD]] -- COMMAND...
#   note TEXT                         a line of its own (plain: "[PREFIX] TEXT")
#
# Human view (KTRAIL_OUTPUT=human, the default on a terminal): COMMAND's output goes to the
# log file (named in the header) and the step's line refreshes in place with a spinner, the
# seconds so far and its progress: apt's percentage (KTRAIL_STEP_STATUS, see apt.sh), or how
# many lines of its output match REGEX (of N). Done, the line says the count, or else the
# step's last output line. A failed step prints the end of its output and stops the script.
# Otherwise (KTRAIL_OUTPUT=json, or no terminal): "[PREFIX] LABEL", then COMMAND's output as it
# comes, as before this view existed.
STEP_N=0
STEP_TOTAL=0
STEP_PREFIX=install
STEP_HUMAN=0
if [ "${KTRAIL_OUTPUT:-}" = human ] || { [ -z "${KTRAIL_OUTPUT:-}" ] && [ -t 1 ]; }; then STEP_HUMAN=1; fi
case "${LC_ALL:-${LC_CTYPE:-${LANG:-}}}" in
*UTF-8* | *utf8* | *UTF8* | *utf-8*)
  STEP_OK='✓'
  STEP_FAIL='✗'
  STEP_SPIN=(⠋ ⠙ ⠹ ⠸ ⠼ ⠴ ⠦ ⠧ ⠇ ⠏)
  ;;
*)
  STEP_OK='ok'
  STEP_FAIL='FAILED'
  STEP_SPIN=('-' '\' '|' '/')
  ;;
esac
# Colour only on a terminal and never when NO_COLOR is set (https://no-color.org).
if [ $STEP_HUMAN = 1 ] && [ -z "${NO_COLOR:-}" ]; then
  C_OK=$'\e[32m' C_FAIL=$'\e[31m' C_DIM=$'\e[2m' C_OFF=$'\e[0m'
else
  C_OK='' C_FAIL='' C_DIM='' C_OFF=''
fi

steps_begin() {
  STEP_PREFIX=$1
  STEP_TOTAL=$3
  [ $STEP_HUMAN = 1 ] || return 0
  STEP_LOG="${KTRAIL_CACHE:-$ROOT/.cache}/logs/$STEP_PREFIX.log"
  STEP_STATUS="$STEP_LOG.status"
  mkdir -p "$(dirname "$STEP_LOG")"
  if [ -f "$STEP_LOG" ]; then mv -f "$STEP_LOG" "$STEP_LOG.1"; fi
  : >"$STEP_LOG"
  printf '%s %s(full log: %s)%s\n' "$2" "$C_DIM" "${STEP_LOG#"$ROOT/"}" "$C_OFF"
}

note() {
  if [ $STEP_HUMAN = 1 ]; then
    printf '  %s\n' "$*"
    printf '%s\n' "$*" >>"$STEP_LOG"
  else
    printf '[%s] %s\n' "$STEP_PREFIX" "$*"
  fi
}

step_cols() {
  local size
  size=$(stty size </dev/tty 2>/dev/null) || size=''
  size=${size#* }
  if [[ "$size" =~ ^[0-9]+$ ]] && [ "$size" -gt 20 ]; then echo "$size"; else echo 80; fi
}

# What the step has done so far: apt's status line, or the count of matching output lines.
step_progress() {
  local offset=$1 re=$2 of=$3 unit=$4 line pct n
  line=$(tail -n 1 "$STEP_STATUS" 2>/dev/null)
  case "$line" in
  dlstatus:*)
    pct=$(cut -d: -f3 <<<"$line")
    echo "downloading ${pct%%.*}%"
    return
    ;;
  pmstatus:*)
    pct=$(cut -d: -f3 <<<"$line")
    echo "installing ${pct%%.*}%"
    return
    ;;
  esac
  [ -n "$re" ] || return 0
  n=$(tail -c +"$((offset + 1))" "$STEP_LOG" | grep -cE -- "$re")
  if [ -n "$of" ]; then echo "$n/$of${unit:+ $unit}"; else echo "$n${unit:+ $unit}"; fi
}

# The step's last output line, without the "[script] " a deploy/local script puts first.
step_last_line() {
  tail -c +"$(($1 + 1))" "$STEP_LOG" | sed 's/\x1b\[[0-9;]*[a-zA-Z]//g; s/^[[:space:]]*//; s/^\[[^]]*\] //' |
    grep -v '^$' | tail -n 1
}

# One refreshing line: "  [n/N] LABEL  spinner  progress  12 s", cut to the terminal's width.
step_line() {
  local mark=$1 label=$2 detail=$3 secs=$4 cols text
  cols=$(step_cols)
  text="[$STEP_N/$STEP_TOTAL] $label"
  local room=$((cols - ${#text} - ${#secs} - 12))
  if [ "$room" -lt 0 ]; then room=0; fi
  if [ ${#detail} -gt "$room" ]; then detail="${detail:0:$room}"; fi
  printf '\r\e[K  %s %s  %s%s  %s%s' "$mark" "$text" "$C_DIM" "$detail" "$secs" "$C_OFF"
}

step() {
  local label=$1 re='' of='' unit=''
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    case $1 in
    --count) re=$2 ;;
    --of) of=$2 ;;
    --unit) unit=$2 ;;
    *) echo "step: unknown option $1" >&2 && return 2 ;;
    esac
    shift 2
  done
  shift
  STEP_N=$((STEP_N + 1))
  if [ $STEP_HUMAN != 1 ]; then
    printf '[%s] %s\n' "$STEP_PREFIX" "$label"
    "$@"
    return
  fi
  local offset t0=$SECONDS status=0 pid i=0 detail
  printf '\n== %s\n' "$label" >>"$STEP_LOG"
  offset=$(stat -c %s "$STEP_LOG")
  : >"$STEP_STATUS"
  # In the background so the line can refresh; `wait` keeps `set -e` working inside COMMAND.
  KTRAIL_STEP_STATUS=$STEP_STATUS NO_COLOR=1 "$@" >>"$STEP_LOG" 2>&1 </dev/null &
  pid=$!
  # A background command ignores Ctrl-C: pass it on, then stop.
  trap 'kill -TERM '"$pid"' 2>/dev/null; wait '"$pid"' 2>/dev/null; printf "\n"; exit 130' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    step_line "${STEP_SPIN[i % ${#STEP_SPIN[@]}]}" "$label" "$(step_progress "$offset" "$re" "$of" "$unit")" "$((SECONDS - t0)) s"
    i=$((i + 1))
    sleep 0.2
  done
  wait "$pid" || status=$?
  trap - INT TERM
  rm -f "$STEP_STATUS"
  if [ $status != 0 ]; then
    step_line "$C_FAIL$STEP_FAIL$C_OFF" "$label" "exit $status" "$((SECONDS - t0)) s"
    printf '\n%s\n' "--- last lines of its output (all of it: ${STEP_LOG#"$ROOT/"}) ---"
    tail -c +"$((offset + 1))" "$STEP_LOG" | tail -n 25
    exit "$status"
  fi
  detail=''
  if [ -n "$re" ]; then detail=$(step_progress "$offset" "$re" "" "$unit"); fi
  if [ -z "$re" ] || [ "${detail%% *}" = 0 ]; then
    detail=$(step_last_line "$offset")
    # "npm packages: up to date" after the label "npm packages" reads better as "up to date".
    shopt -s nocasematch
    if [[ "$detail" == "$label: "* ]]; then detail=${detail:${#label}+2}; elif [[ "$detail" == "$label "* ]]; then detail=${detail:${#label}+1}; fi
    shopt -u nocasematch
  fi
  step_line "$C_OK$STEP_OK$C_OFF" "$label" "$detail" "$((SECONDS - t0)) s"
  printf '\n'
}
