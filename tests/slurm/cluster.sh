#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, with accounting, for the tests marked `slurm` (tests/slurm/).
#
#   tests/slurm/cluster.sh up          # install Debian's packages if missing, then start munged, mariadbd, slurmdbd,
#                                      # slurmctld and slurmd; idempotent. Measured: 1.8 s; the first time 8 s (the
#                                      # database is created), and 5 s with --fresh (slurmdbd creates its tables)
#   tests/slurm/cluster.sh up --fresh  # the same from an empty controller state and accounting database
#   tests/slurm/cluster.sh status      # each daemon and `sinfo`; exit 0 when the cluster takes jobs
#   tests/slurm/cluster.sh down        # cancel every job, stop what `up` started (about 7 s); idempotent
#   tests/slurm/cluster.sh logs        # the last lines of each daemon's log
#
# As root, without systemd or cgroups (proctrack/linuxproc, task/none). The controller's state and the accounting
# database outlive `down` (job ids go on from where they were; `down` cancels every job first); `up --fresh` empties
# both, and job ids restart at 1: give every test its own submitit folder. Accounting (slurmdbd + mariadb) is what
# lets submitit tell a job that died without a result from one still running. Files: $REGBENCH_SLURM_DIR (default
# /var/tmp/regbench-slurm), /etc/slurm/slurm.conf and slurmdbd.conf (written only where absent or written by this
# script), /run/munge.
set -euo pipefail

BASE=${REGBENCH_SLURM_DIR:-/var/tmp/regbench-slurm}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# written by regbench's tests/slurm/cluster.sh"
CLUSTER=regbench
DB_PORT=${REGBENCH_SLURM_DB_PORT:-3307}
DB_PASS=regbench
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

say() { echo "cluster.sh: $*" >&2; }
die() { say "error: $*"; dump_logs; exit 1; }

dump_logs() {
  local f
  for f in "$BASE"/log/*.log "$BASE"/mysql-run/mariadb.log /var/log/munge/munged.log; do
    [ -s "$f" ] || continue
    echo "----- last lines of $f" >&2
    tail -n 25 "$f" >&2 || true
  done
}

# wait_for SECONDS WHAT COMMAND...: retry COMMAND every 0.1 s until it succeeds.
wait_for() {
  local limit=$1 what=$2 i
  shift 2
  for ((i = 0; i < limit * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "$what did not come up within ${limit} s"
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_packages() {
  local missing=() p
  command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null || missing+=(slurm-wlm)
  command -v munged >/dev/null || missing+=(munge)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: run as root to install them, or install them"
  say "installing ${missing[*]}"
  for p in 1 2 3; do
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >"$BASE/log/apt.log" 2>&1; then
      return 0
    fi
    say "apt-get failed (try $p of 3)"; tail -n 20 "$BASE/log/apt.log" >&2 || true
    sleep $((p * 5))
  done
  die "could not install ${PACKAGES[*]}"
}

own_or_absent() {  # a config file this script may write: absent, or written by it
  [ ! -e "$1" ] || head -n 1 "$1" | grep -qF "$MARK" || die "$1 exists and was not written by this script; not touching it"
}

write_configs() {
  own_or_absent "$CONF"
  own_or_absent "$DBD_CONF"
  local host node
  host=$(hostname -s)
  node=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=... RealMemory=...
  mkdir -p /etc/slurm
  cat >"$CONF" <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
KillWait=5
InactiveLimit=0
MinJobAge=300
JobRequeue=1
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
MailProg=/bin/true
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DBD_CONF"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi  # already running (ours or the system's)
  [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; chown munge:munge /etc/munge/munge.key; }
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  rm -f /run/munge/munge.socket.2 /run/munge/munged.pid
  runuser -u munge -- munged --force
  touch "$BASE/run/munged.ours"
  wait_for 10 munged bash -c 'munge -n | unmunge'
}

db() { mariadb --socket="$BASE/mysql-run/mysqld.sock" -u root "$@"; }

start_mariadb() {
  if ! pid_alive "$BASE/mysql-run/mariadbd.pid"; then
    if [ ! -d "$BASE/mysql/mysql" ]; then
      rm -rf "$BASE/mysql"
      mariadb-install-db --user=mysql --datadir="$BASE/mysql" --auth-root-authentication-method=socket \
        --skip-test-db >"$BASE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $BASE/log/mariadb-install.log)"
    fi
    mkdir -p "$BASE/mysql-run"
    chown -R mysql:mysql "$BASE/mysql" "$BASE/mysql-run"
    nohup mariadbd --user=mysql --datadir="$BASE/mysql" --socket="$BASE/mysql-run/mysqld.sock" --port="$DB_PORT" \
      --bind-address=127.0.0.1 --pid-file="$BASE/mysql-run/mariadbd.pid" --log-error="$BASE/mysql-run/mariadb.log" \
      --innodb-buffer-pool-size=64M --skip-log-bin </dev/null >/dev/null 2>&1 &
    wait_for 30 "mariadbd on port $DB_PORT" port_open "$DB_PORT"
    wait_for 10 "mariadbd's socket" db -e 'select 1'
  fi
  db <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

cluster_up() {
  scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'
}

up() {
  mkdir -p "$BASE/log" "$BASE/run" "$BASE/state" "$BASE/spool"
  install_packages
  if cluster_up && pid_alive "$BASE/run/slurmctld.pid"; then say "already up"; return 0; fi
  local t0=$EPOCHREALTIME stages=""
  stage() { stages+=" $1 $(printf '%.1f' "$(echo "$EPOCHREALTIME - $t0" | tr -d '\n' | awk '{print $1 - $3}')")s"; }
  write_configs
  start_munge; stage munged
  start_mariadb; stage mariadbd
  if [ "$FRESH" = 1 ] && ! pid_alive "$BASE/run/slurmctld.pid"; then
    # Empty state and accounting: job ids restart at 1, and sacct knows no older job of the same id.
    pid_alive "$BASE/run/slurmdbd.pid" && kill "$(cat "$BASE/run/slurmdbd.pid")" && sleep 0.3
    rm -rf "$BASE/state" "$BASE/spool" && mkdir -p "$BASE/state" "$BASE/spool"
    db -e 'DROP DATABASE IF EXISTS slurm_acct_db'
  fi
  if ! pid_alive "$BASE/run/slurmdbd.pid"; then
    slurmdbd
    wait_for 30 "slurmdbd on port 6819" port_open 6819
  fi
  stage slurmdbd
  if ! pid_alive "$BASE/run/slurmctld.pid"; then
    slurmctld
  fi
  wait_for 30 slurmctld bash -c 'scontrol ping | grep -q "is UP"'
  stage slurmctld
  if ! pid_alive "$BASE/run/slurmd.pid"; then
    slurmd
  fi
  wait_for 30 "the node (sinfo: idle)" bash -c "sinfo -h -o '%T' | grep -qE '^(idle|mixed|allocated)'"
  stage slurmd
  say "up (at${stages}): $(sinfo -h -o '%P %D node(s) %c CPUs %T')"
}

stop_pidfiles() {  # stop_pidfiles FILE...: SIGTERM to each, then SIGKILL to those still there after 15 s
  local file pids=() pid i
  for file in "$@"; do
    if pid_alive "$file"; then pids+=("$(cat "$file")"); kill "${pids[-1]}" 2>/dev/null || true; fi
  done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then say "pid $pid ignored SIGTERM; killing it"; kill -9 "$pid" 2>/dev/null || true; fi
  done
  rm -f "$@"
}

down() {
  local i
  if cluster_up; then
    scancel --full --quiet --cluster="$CLUSTER" --user="$(id -un)" 2>/dev/null || scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do [ -z "$(squeue -h -t R,CG,PD 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  stop_pidfiles "$BASE/run/slurmd.pid" "$BASE/run/slurmctld.pid"
  stop_pidfiles "$BASE/run/slurmdbd.pid" "$BASE/mysql-run/mariadbd.pid"
  if [ -e "$BASE/run/munged.ours" ]; then
    stop_pidfiles /run/munge/munged.pid
    rm -f "$BASE/run/munged.ours"
  fi
  say "down"
}

status() {
  local ok=0 name
  for name in run/slurmd run/slurmctld run/slurmdbd mysql-run/mariadbd; do
    if pid_alive "$BASE/$name.pid"; then echo "${name#*/}: running (pid $(cat "$BASE/$name.pid"))"; else echo "${name#*/}: stopped"; fi
  done
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then echo "munged: running"; else echo "munged: stopped"; fi
  if cluster_up; then sinfo; else echo "cluster: not up"; ok=1; fi
  return $ok
}

FRESH=0
[ "${2:-}" = --fresh ] && FRESH=1
case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  logs) dump_logs ;;
  *) echo "usage: $0 up [--fresh]|down|status|logs" >&2; exit 2 ;;
esac
