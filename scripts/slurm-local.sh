#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, for testing the workflow's SLURM profile against a
# real scheduler (Debian 12: slurm-wlm 22.05, munge, slurmdbd + MariaDB for accounting). Run as
# root on a machine without systemd (a CI container); it never touches daemons it did not start.
#
#   scripts/slurm-local.sh install   apt-get install the packages (skipped when present)
#   scripts/slurm-local.sh start     write the configs, start munged, mariadbd, slurmdbd,
#                                    slurmctld and slurmd, wait until the node is idle
#   scripts/slurm-local.sh stop      stop exactly the daemons `start` started (by PID file)
#   scripts/slurm-local.sh status    sinfo, or exit 1 when the cluster is not up
#
# The node is "localhost" with all CPUs, the memory slurmd detects, and one fake GPU (gres
# backed by /dev/null) so that jobs asking for --gpus=1 can be scheduled. Accounting runs
# through slurmdbd, so `sacct` works: the SLURM executor plugin checks job status with sacct by
# default and, without accounting, waits forever for jobs that have long finished.
set -euo pipefail

CLUSTER=nnboundary
PARTITION=debug
STATE=${SLURM_LOCAL_STATE:-/run/nnboundary-slurm}   # PID files of what `start` started
LOGS=/var/log/slurm
DB_PASSWORD=nnboundary-slurmdb
PACKAGES="slurm-wlm munge slurmdbd mariadb-server"

log() { echo "slurm-local: $*" >&2; }

# until <seconds> <what> <command...>: retry the command until it succeeds or time runs out.
until_ok() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "gave up waiting for $what after ${seconds}s"
  return 1
}

install_packages() {
  local missing=""
  for package in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing="$missing $package"
  done
  if [ -z "$missing" ]; then
    log "packages already installed"
    return 0
  fi
  log "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # In Debian containers policy-rc.d keeps the packages' scripts from starting any service.
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

write_configs() {
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGS" "$STATE"
  local cpus memory
  cpus=$(nproc)
  # RealMemory above what slurmd detects would make the node INVALID: take slurmd's figure.
  memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# Record GPU requests, so that sacct shows what each job asked for.
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that does not ask for memory gets the whole node.
DefMemPerCPU=500
GresTypes=gpu
ReturnToService=2
MinJobAge=300
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  # A GPU count without a device file is reported as 0 and makes the node INVALID.
  echo "NodeName=localhost Name=gpu File=/dev/null" >/etc/slurm/gres.conf
  cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
LogFile=$LOGS/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
EOF
  chmod 600 /etc/slurm/slurmdbd.conf  # slurmdbd refuses a config others can read
}

start_cluster() {
  if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    log "already running (PID files in $STATE)"
    return 0
  fi
  write_configs
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  cp /run/munge/munged.pid "$STATE/munged.pid"
  until_ok 10 munge sh -c 'munge -n | unmunge'

  install -d -o mysql -g mysql -m 0755 /run/mysqld
  setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
    >"$LOGS/mariadbd.log" 2>&1 </dev/null &
  echo $! >"$STATE/mariadbd.pid"
  until_ok 60 mariadb mariadb-admin ping
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  /usr/sbin/slurmdbd
  until_ok 60 slurmdbd sacctmgr -nP list cluster
  sacctmgr -nP list cluster format=cluster | grep -qx "$CLUSTER" \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null

  /usr/sbin/slurmctld
  until_ok 30 slurmctld scontrol ping
  # The node is called localhost, not the machine's hostname: tell slurmd its name.
  /usr/sbin/slurmd -N localhost
  until_ok 60 "node localhost idle" sh -c '[ "$(sinfo -h -n localhost -o %t)" = idle ]'
  sinfo
}

stop_cluster() {
  local name pid
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    [ -f "$STATE/$name.pid" ] || continue
    pid=$(cat "$STATE/$name.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
      if kill -0 "$pid" 2>/dev/null; then
        log "$name ($pid) ignored SIGTERM for 30 s; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$STATE/$name.pid"
  done
}

case "${1:-}" in
  install) install_packages ;;
  start) start_cluster ;;
  stop) stop_cluster ;;
  status) sinfo >/dev/null 2>&1 && sinfo ;;
  *)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac
