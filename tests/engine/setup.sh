#!/usr/bin/env bash
# Start (or reuse) the Docker engine the stackward tests run against.
#
# Run as root on Debian. Idempotent: an engine that already answers `docker info` is reused,
# the image is built only when missing, and the swarm is initialised only when inactive.
#
#   1. packages: docker.io docker-compose busybox-static git iproute2 docker-registry (apt-get,
#      only if missing; docker-registry: the image update tests start their own registry)
#   2. dockerd in the background, logging to $STACKWARD_DOCKERD_LOG
#   3. image stackward-test/busybox:1 (busybox applets + /www/index.html), via `docker import`
#   4. a one-node swarm advertised on 127.0.0.1
#
# Exit status: 0 ready; 1 something failed (the reason is on stderr); 2 cannot set up
# (not root / no apt-get) while no engine answers.
set -euo pipefail

IMAGE="${STACKWARD_TEST_IMAGE:-stackward-test/busybox:1}"
LOG="${STACKWARD_DOCKERD_LOG:-/var/log/stackward-dockerd.log}"
DEADLINE_S="${STACKWARD_DOCKERD_DEADLINE:-60}"
PACKAGES=(docker.io docker-compose busybox-static git iproute2 docker-registry)

say() { echo "engine-setup: $*" >&2; }
die() { say "$1"; exit "${2:-1}"; }

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

can_install() { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_packages() {
    [ "$#" -eq 0 ] && return 0
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    # `apt-get update` only when the package lists do not know a package yet
    if ! apt-get install -y -qq "$@" >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq "$@" >/dev/null
    fi
}

start_engine() {
    if engine_up; then
        # Someone else's engine (maybe Docker CE): never install docker.io next to it, only
        # the tools the tests need that are missing.
        local extra=()
        [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || extra+=(busybox-static)
        docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
            || extra+=(docker-compose)
        command -v git >/dev/null || extra+=(git)
        command -v ip >/dev/null || extra+=(iproute2)
        command -v docker-registry >/dev/null || extra+=(docker-registry)
        if [ "${#extra[@]}" -gt 0 ]; then
            if can_install; then install_packages "${extra[@]}"; else say "missing: ${extra[*]}"; fi
        fi
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and not root: cannot start one" 2
    command -v apt-get >/dev/null || die "no Docker engine answers and no apt-get" 2
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
    install_packages "${missing[@]}"
    command -v docker >/dev/null || die "no docker CLI after installing docker.io"
    if ! pgrep -x dockerd >/dev/null; then
        say "starting dockerd (log: $LOG)"
        mkdir -p "$(dirname "$LOG")"
        # The engine outlives this script: it must not keep a descriptor it inherited (a lock
        # the caller holds while the tests run, say), so every one above stderr is closed.
        (
            for fd in /proc/$BASHPID/fd/*; do
                fd=${fd##*/}
                [ "$fd" -gt 2 ] && eval "exec $fd>&-"
            done
            exec setsid nohup dockerd >>"$LOG" 2>&1 </dev/null
        ) &
    fi
    local end=$((SECONDS + DEADLINE_S))
    until engine_up; do
        if [ "$SECONDS" -ge "$end" ]; then
            tail -n 20 "$LOG" >&2 || true
            die "dockerd did not answer within ${DEADLINE_S}s (log: $LOG)"
        fi
        sleep 0.2
    done
}

build_image() {
    docker image inspect "$IMAGE" >/dev/null 2>&1 && return 0
    local bb dir applet
    bb="$(command -v busybox || true)"
    [ -x /bin/busybox ] && bb=/bin/busybox
    [ -n "$bb" ] || die "busybox not found (package busybox-static)"
    file_is_static "$bb" || die "$bb is not static; install busybox-static"
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' RETURN
    mkdir -p "$dir/bin" "$dir/www" "$dir/tmp" "$dir/etc" "$dir/root"
    chmod 1777 "$dir/tmp"
    cp "$bb" "$dir/bin/busybox"
    # Relative links: `busybox --install -s` would point them at this temporary directory.
    for applet in $("$dir/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
    echo '<html><body>stackward test</body></html>' >"$dir/www/index.html"
    say "building $IMAGE"
    tar -C "$dir" -c . | docker import \
        -c 'ENV PATH=/bin' -c 'WORKDIR /' -c 'CMD ["sh"]' - "$IMAGE" >/dev/null
}

file_is_static() {
    # busybox-static's binary needs no loader; a dynamic one would not run in the image.
    ! ldd "$1" >/dev/null 2>&1
}

init_swarm() {
    local state
    state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
    case "$state" in
        active) ;;
        inactive) say "docker swarm init"; docker swarm init --advertise-addr 127.0.0.1 >/dev/null ;;
        *) die "swarm is in state '$state'; fix it by hand (docker swarm leave --force)" ;;
    esac
}

start_engine
build_image
init_swarm
say "ready: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'), image $IMAGE, swarm active"
