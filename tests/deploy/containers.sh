#!/usr/bin/env bash
# Runs glia's image and compose (b) for real with podman (tests/run-all runs this, as root):
# - the image (deploy/docker/build-local.sh builds it): it starts, /health answers, it runs as
#   991, its HEALTHCHECK passes, and with the example config its log warns that the API is open;
# - compose (b)'s NATS + coordinator + worker replicas with podman-compose from PyPI: /health of
#   the coordinator and of every worker, their health checks, decisions answered by a module that
#   a worker container serves over the NATS container, a reload by SIGHUP of the mounted config,
#   a fourth worker by --scale, and decisions still answered with a worker killed, and with
#   another crashed and restarted.
# Needs podman, buildah, debootstrap, runc and curl from Debian (tests/run-all installs them),
# podman-compose in tests/deploy/.venv (tests/deploy/run.sh installs it) and a built glia.
# No registry is reachable here: the images come from a debootstrap base, NATS from Debian's
# nats-server (tests/deploy/nats.Dockerfile). Containers run with deploy/docker/containers.conf.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
glia="${GLIA_BIN:-$root/target/debug/glia}"
cache="$root/target/containers"
compose="$here/.venv/bin/podman-compose"
export CONTAINERS_CONF="$root/deploy/docker/containers.conf"
work="$(mktemp -d)"
image_ctr="glia-image-test-$$"
project="glia-compose-test-$$"

say() { printf -- '-- [%3ss] %s\n' "$SECONDS" "$*"; }
fail() { echo "error: $*" >&2; exit 1; }
for tool in podman buildah debootstrap runc curl; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] \
        || fail "$tool is missing; install it: sudo apt-get install podman buildah debootstrap runc curl"
done
[ -x "$compose" ] || fail "no podman-compose at $compose; run tests/deploy/run.sh (it creates the venv)"
[ "$(id -u)" = 0 ] || fail "the container tests run podman as root; run them as root"

# The compose project runs from a copy of deploy/, with its secret and the test's overlay.
stack() {
    (cd "$work/deploy/compose" && POSTGRES_PASSWORD=unused "$compose" -p "$project" \
        -f docker-compose.yml -f docker-compose.nats.yml -f compose-local.yml "$@")
}
cleanup() {
    local status=$?
    if [ "$status" != 0 ]; then # what the containers said, to see why
        for ctr in $(podman ps -a --filter "name=$$" --format '{{.Names}}'); do
            echo "-- log of $ctr (last 20 lines)" >&2
            podman logs --tail 20 "$ctr" >&2 2>&1 || true
        done
    fi
    podman rm -f "$image_ctr" >/dev/null 2>&1 || true
    [ ! -d "$work/deploy/compose" ] || stack down -t 2 >/dev/null 2>&1 || true
    # `down` knows the replicas of the file only, not those added by --scale.
    podman rm -f -t 2 $(podman ps -aq --filter "label=io.podman.compose.project=$project") >/dev/null 2>&1 || true
    podman network rm "${project}_default" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# Asks a /health with COMMAND (curl's arguments follow) until it says `ok` with no failed or
# unserved module, then prints it; fails with its last answer. Waits for a start-up, not a
# timing check: 100 tries, 0.2 s apart.
health_ok() { # COMMAND...
    for _ in $(seq 100); do
        "$@" > "$work/health" 2>/dev/null || true
        python3 -c 'import json, sys; h = json.load(sys.stdin)
sys.exit(h["status"] != "ok" or bool(h.get("failed")) or bool(h.get("unserved")))' \
            < "$work/health" 2>/dev/null && { cat "$work/health"; return 0; }
        sleep 0.2
    done
    fail "/health did not say ok: $(cat "$work/health")"
}
# Runs COMMAND until it succeeds (a change of state to wait for, not a timing check): 100 tries,
# 0.2 s apart.
poll() { # COMMAND...
    for _ in $(seq 99); do "$@" && return 0; sleep 0.2; done
    "$@"
}
# Reads URL inside CONTAINER with the image's own curl: the compose services publish no port.
inside() { # CONTAINER URL [curl args...]
    local ctr="$1" url="$2"
    shift 2
    podman exec "$ctr" curl -fsS "$@" "$url"
}
# Without systemd podman runs no health check on its own: run the image's or the service's now.
healthy() { # CONTAINER
    podman healthcheck run "$1" >/dev/null || fail "the health check of $1 failed"
    echo "ok health check: $1"
}

say "images: glia (deploy/docker/build-local.sh) and NATS (tests/deploy/nats.Dockerfile)"
"$root/deploy/docker/build-local.sh" "$glia" "$cache"
podman build --quiet --format docker -f "$here/nats.Dockerfile" -t localhost/glia-test-nats:local "$work" >/dev/null

check_image() {
    [ "$(podman image inspect --format '{{.Config.User}}' localhost/glia:local)" = "991:991" ] \
        || fail "the image does not run as 991:991"
    podman run -d --name "$image_ctr" -p 127.0.0.1::8787 localhost/glia:local >/dev/null 2>"$work/run.err" \
        || { cat "$work/run.err" >&2; fail "podman run localhost/glia:local failed"; }
    local port
    port="$(podman port "$image_ctr" 8787 | head -1 | sed 's/.*://')"
    echo "ok /health on the published port: $(health_ok curl -fsS "http://127.0.0.1:$port/health")"
    [ "$(podman exec "$image_ctr" id -u)" = 991 ] || fail "the container does not run as 991"
    podman top "$image_ctr" huser args > "$work/top"
    grep -q '^991 .*glia serve' "$work/top" || fail "glia serve is not UID 991"
    echo "ok runs as UID 991"
    healthy "$image_ctr"
    podman logs "$image_ctr" > "$work/image.log" 2>&1
    grep -q 'glia listens beyond loopback without an auth token' "$work/image.log" \
        || fail "no warning about the open API in the log of the default image"
    echo "ok the log warns that the API is open beyond loopback without a token"
}
say "the glia image, with its example config"
check_image
podman rm -f "$image_ctr" >/dev/null 2>&1

# COUNT decisions only a module gives: user_restrictions (placement: nats) denies guests'
# invites, where its failure policy would allow. Asked from inside the coordinator's container
# (one exec for all, with the token of its secret), one answer a line.
invites_denied() { # COORDINATOR COUNT [INVITER]
    local body="{\"inviter\": \"${3:-@guest-1:example.com}\", \"invitee\": \"@bob:example.com\", \"room_id\": \"!r:example.com\"}"
    # shellcheck disable=SC2016 # expanded by the container's shell
    podman exec "$1" sh -c 'for _ in $(seq "$1"); do
        curl -fsS -X POST -d "$2" -H "Authorization: Bearer $(cat /run/secrets/glia_token)" \
            http://localhost:8787/_glia/v1/callbacks/user_may_invite && echo; done' sh "$2" "$body" > "$work/decisions" || true
    local denied
    denied="$(grep -c '"decision":"deny".*"module":"user_restrictions"' "$work/decisions")" || true
    [ "$denied" = "$2" ] || fail "$denied of $2 invites denied by user_restrictions: $(sort "$work/decisions" | uniq -c)"
}
# The sum of the samples of METRIC whose labels match LABELS, from /metrics at URL in CONTAINER.
metric() { # CONTAINER URL METRIC LABELS
    inside "$1" "$2" | awk -v m="$3" -v l="$4" 'index($0, m "{") == 1 && $0 ~ l { n += $NF } END { print n + 0 }'
}
# Invocations of user_restrictions that WORKER served.
served() { # WORKER
    metric "$1" http://localhost:9787/metrics glia_invocations_total 'module="user_restrictions"'
}
# Sums the invocations served by WORKERS into $served_total, and lists them in $served_line.
served_by() { # WORKER...
    served_total=0
    served_line=""
    local worker n
    for worker in "$@"; do
        n="$(served "$worker")"
        served_total=$((served_total + n))
        served_line+=" ${worker##*_}=$n"
    done
}
workers() { podman ps --filter "label=io.podman.compose.project=$project" \
    --filter "label=io.podman.compose.service=glia-worker" --format '{{.Names}}' | sort; }

say "compose (b): NATS, the coordinator and glia-worker replicas (podman-compose $("$compose" --version 2>/dev/null | awk 'NR == 1 { print $NF }'))"
mkdir -p "$work/deploy"
cp -r "$root/deploy/compose" "$root/deploy/prometheus" "$work/deploy/"
cp "$here/compose-local.yml" "$work/deploy/compose/"
head -c 32 /dev/urandom | base64 > "$work/deploy/compose/glia_token"
chmod 0644 "$work/deploy/compose/glia_token"
stack up -d nats glia glia-worker > "$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "podman-compose up failed"; }
coordinator="${project}_glia_1"
mapfile -t replicas < <(workers)
[ "${#replicas[@]}" = 3 ] || fail "want 3 glia-worker replicas (deploy.replicas), got: ${replicas[*]}"
echo "ok 3 worker replicas: ${replicas[*]}"

check_stack() {
    echo "ok coordinator /health: $(health_ok inside "$coordinator" http://localhost:8787/health)"
    for worker in "${replicas[@]}"; do
        echo "ok $worker /health: $(health_ok inside "$worker" http://localhost:9787/health)"
    done
    for ctr in "${project}_nats_1" "$coordinator" "${replicas[@]}"; do healthy "$ctr"; done
}
check_stack

say "decisions through the coordinator, answered by a worker container's module over NATS"
invites_denied "$coordinator" 30
served_by "${replicas[@]}"
[ "$served_total" -ge 30 ] || fail "the workers served $served_total of 30 invocations"
echo "ok 30 invites denied by user_restrictions; invocations served per worker:$served_line"

say "the mounted config edited and SIGHUP sent to the coordinator and workers (podman-compose kill -s HUP)"
config="$work/deploy/compose/glia/nats.yaml"
if (invites_denied "$coordinator" 1 @visitor-1:example.com) 2>/dev/null; then
    fail "a visitor's invite was denied before the config said so"
fi
sed 's/"@guest-/"@(guest|visitor)-/' "$config" > "$work/nats.yaml"
# Written in place: a file's bind mount follows its inode, so a file renamed over it (sed -i,
# many editors) would not be seen in the containers.
cat "$work/nats.yaml" > "$config"
stack kill -s HUP glia glia-worker > "$work/hup.log" 2>&1 || { cat "$work/hup.log" >&2; fail "podman-compose kill -s HUP failed"; }
reloaded_once() { # CONTAINER PORT
    [ "$(metric "$1" "http://localhost:$2/metrics" glia_config_reloads_total 'result="applied"')" = 1 ]
}
poll reloaded_once "$coordinator" 8787 || fail "the coordinator did not reload (glia_config_reloads_total)"
for worker in "${replicas[@]}"; do
    poll reloaded_once "$worker" 9787 || fail "$worker did not reload (glia_config_reloads_total)"
done
invites_denied "$coordinator" 30 @visitor-1:example.com
echo "ok each reloaded once; 30 invites from a visitor, allowed before, denied by user_restrictions"

say "scaled to 4 workers (podman-compose up --scale glia-worker=4): the new one serves too"
stack up -d --scale glia-worker=4 glia-worker > "$work/scale.log" 2>&1 || { cat "$work/scale.log" >&2; fail "podman-compose up --scale failed"; }
mapfile -t replicas < <(workers)
[ "${#replicas[@]}" = 4 ] || fail "want 4 glia-worker replicas, got: ${replicas[*]}"
echo "ok ${replicas[3]} /health: $(health_ok inside "${replicas[3]}" http://localhost:9787/health)"
healthy "${replicas[3]}"
# NATS spreads a queue group's requests at random: the new one missing all 60 has odds of 3e-8.
invites_denied "$coordinator" 60
served_by "${replicas[@]}"
[ "$(served "${replicas[3]}")" -ge 1 ] || fail "${replicas[3]} served none of 60 invocations"
echo "ok 60 invites denied; invocations served per worker:$served_line"

say "a worker killed: decisions still answered by the module, by the other replicas"
killed="${replicas[0]}"
podman kill "$killed" >/dev/null
served_by "${replicas[@]:1}"
before="$served_total"
invites_denied "$coordinator" 30
served_by "${replicas[@]:1}"
[ $((served_total - before)) -ge 30 ] || fail "the other workers served $((served_total - before)) of 30 invocations"
echo "ok 30 invites denied after killing ${killed##*_}; per worker now:$served_line"

say "a worker crashed (its process SIGKILLed, as by the OOM killer): restarted, decisions answered"
crashed="${replicas[1]}"
kill -KILL "$(podman inspect --format '{{.State.Pid}}' "$crashed")"
restarted() { [ "$(podman inspect --format '{{.RestartCount}}' "$crashed")" -ge 1 ]; }
poll restarted || fail "$crashed was not restarted (restart: unless-stopped)"
echo "ok $crashed restarted; /health: $(health_ok inside "$crashed" http://localhost:9787/health)"
served_by "${replicas[@]:2}"
before="$served_total"
invites_denied "$coordinator" 30
served_by "${replicas[@]:1}"
[ $((served_total - before)) -ge 30 ] || fail "the live workers served $((served_total - before)) of 30 invocations"
echo "ok 30 invites denied; per worker now (${crashed##*_} counts from its restart):$served_line"
# podman treats `podman kill` as a stop, so unless-stopped leaves that one down.
echo "(the one killed with podman kill: $(podman inspect --format '{{.State.Status}}' "$killed"))"
echo "containers: all checks passed in ${SECONDS}s"
