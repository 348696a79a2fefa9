#!/usr/bin/env bash
# The package test (make test-package): builds the deb and rpm packages for
# amd64 and arm64, inspects them, runs lintian on the deb and, on a
# throwaway machine only, installs the deb, upgrades it with an edited
# config, removes and purges it, checking users, files, modes and state at
# each step.
#
# Installing needs root and CI=true or AGENT_PACKAGE_TEST_INSTALL=1 (=0
# turns it off even with CI=true), so a developer's `make test-package` never
# installs anything by accident; it refuses when an agent package is already
# installed. The machine is left
# as found: the package purged, and the agent user removed if the test
# created it (the package itself keeps the user on purge).
#
# Needs: dpkg-deb; lintian and rpm (apt-get install lintian rpm) and
# systemd-analyze (systemd), each required when installing, else skipped
# with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
V1=0.1.0
V2=0.1.1
HOST_ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
START=$SECONDS

step() { printf '== test-package [%3ds]: %s\n' $((SECONDS - START)) "$*"; }
fail() {
	echo "test-package: FAIL: $*" >&2
	exit 1
}
# expect_mode PATH MODE OWNER GROUP
expect_mode() {
	local got
	got=$(stat -c '%a %U %G' "$1") || fail "$1 is missing"
	[ "$got" = "$2 $3 $4" ] || fail "$1: got mode/owner/group '$got', want '$2 $3 $4'"
}

install_mode=false
if [ "${AGENT_PACKAGE_TEST_INSTALL:-}" = 1 ] ||
	{ [ "${CI:-}" = true ] && [ "${AGENT_PACKAGE_TEST_INSTALL:-}" != 0 ]; }; then
	install_mode=true
	[ "$(id -u)" = 0 ] || fail "installing the package needs root"
	for tool in dpkg lintian rpm systemd-analyze runuser setpriv; do
		command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install lintian rpm systemd)"
	done
	if dpkg-query -W -f '${Status}' agent 2>/dev/null | grep -v >/dev/null 'not-installed'; then
		fail "a package named agent is installed here already: refusing to touch it"
	fi
fi
have() { command -v "$1" >/dev/null; }

tmp=$(mktemp -d)
user_existed=false
getent passwd agent >/dev/null && user_existed=true
installed=false
cleanup() {
	local rc=$?
	if $installed; then
		echo "test-package: cleanup: purging the agent package" >&2
		dpkg --purge agent >/dev/null 2>&1 || true
	fi
	if $install_mode && ! $user_existed && getent passwd agent >/dev/null; then
		userdel agent >/dev/null 2>&1 || true
		getent group agent >/dev/null && groupdel agent >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT

step "build $V1 (deb and rpm, amd64 and arm64)"
commit=$(git rev-parse --short=12 HEAD)
make -s package VERSION=$V1 DIST="$tmp/v1" GO="$GO" >"$tmp/build1.log" 2>&1 || {
	cat "$tmp/build1.log"
	fail "make package VERSION=$V1"
}
for f in agent_${V1}-1_amd64.deb agent_${V1}-1_arm64.deb agent-${V1}-1.x86_64.rpm agent-${V1}-1.aarch64.rpm; do
	[ -s "$tmp/v1/$f" ] || fail "make package did not make $f"
done
deb=$tmp/v1/agent_${V1}-1_${HOST_ARCH}.deb

step "inspect the debs (dpkg-deb --info, --contents)"
for arch in amd64 arm64; do
	d=$tmp/v1/agent_${V1}-1_$arch.deb
	dpkg-deb --info "$d" >"$tmp/info"
	grep -q "^ Architecture: $arch$" "$tmp/info" || fail "$d: Architecture is not $arch"
	grep -q "^ Version: $V1-1$" "$tmp/info" || fail "$d: Version is not $V1-1"
	dpkg-deb --contents "$d" >"$tmp/contents"
	for want in \
		'-rwxr-xr-x root/root .* ./usr/bin/agent$' \
		'-rw-r--r-- root/root .* ./usr/lib/systemd/system/agent.service$' \
		'-rw-r----- root/root .* ./etc/agent/agent.yaml$' \
		'-rw-r--r-- root/root .* ./usr/share/doc/agent/agent.yaml.example$' \
		'-rw-r--r-- root/root .* ./usr/share/doc/agent/copyright$' \
		'-rw-r--r-- root/root .* ./usr/share/doc/agent/changelog.Debian.gz$'; do
		grep -Eq -- "$want" "$tmp/contents" || fail "$d: no entry matching '$want' in:
$(cat "$tmp/contents")"
	done
	[ "$(dpkg-deb --field "$d" Architecture)" = "$arch" ] || fail "$d: wrong architecture"
	# preinst runs groupadd/useradd (passwd: required, not essential).
	dpkg-deb --field "$d" Pre-Depends | grep -qw passwd || fail "$d: no Pre-Depends on passwd (preinst runs useradd)"
	dpkg-deb --ctrl-tarfile "$d" | tar -xOf - ./conffiles | grep -x >/dev/null /etc/agent/agent.yaml ||
		fail "$d: /etc/agent/agent.yaml is not a conffile"
done
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

if have rpm; then
	step "inspect the rpms (rpm -qpli, rpm -qp --scripts)"
	for pair in x86_64 aarch64; do
		r=$tmp/v1/agent-${V1}-1.$pair.rpm
		[ "$(rpm -qp --qf '%{ARCH} %{VERSION}-%{RELEASE}' "$r" 2>/dev/null)" = "$pair $V1-1" ] ||
			fail "$r: not $pair $V1-1"
		rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$r" >"$tmp/rpmfiles" 2>/dev/null
		for want in \
			'-rwxr-xr-x root root  /usr/bin/agent' \
			'-rw-r--r-- root root  /usr/lib/systemd/system/agent.service' \
			'-rw-r----- root agent cn /etc/agent/agent.yaml'; do
			grep -qxF -- "$want" "$tmp/rpmfiles" || fail "$r: no '$want' in:
$(cat "$tmp/rpmfiles")"
		done
		# %pre runs groupadd/useradd, absent from minimal images (ubi-minimal).
		rpm -qpR "$r" 2>/dev/null | grep -qx shadow-utils || fail "$r: does not require shadow-utils (%pre runs useradd)"
		rpm -qp --scripts "$r" >"$tmp/scripts" 2>/dev/null
		for want in 'preinstall scriptlet' 'useradd --system' 'postinstall scriptlet' 'preset agent.service' \
			'preuninstall scriptlet' 'postuninstall scriptlet' 'try-restart agent.service'; do
			grep -qF -- "$want" "$tmp/scripts" || fail "$r: scripts lack '$want'"
		done
	done
	rpm -qpli "$tmp/v1/agent-${V1}-1.x86_64.rpm" 2>/dev/null
	rpm -qp --scripts "$tmp/v1/agent-${V1}-1.x86_64.rpm" 2>/dev/null
else
	step "SKIP rpm inspection: rpm is not installed (apt-get install rpm)"
fi

if have lintian; then
	step "lintian (no errors allowed; overrides in packaging/deb/lintian-overrides)"
	lint_rc=0
	lintian --fail-on error "$deb" >"$tmp/lintian" 2>&1 || lint_rc=$?
	grep -v 'running with root privileges' "$tmp/lintian" || true
	[ "$lint_rc" = 0 ] && ! grep -q '^E: ' "$tmp/lintian" || fail "lintian reports errors on $deb"
else
	step "SKIP lintian: not installed (apt-get install lintian)"
fi

if have systemd-analyze; then
	step "systemd-analyze security (offline) of packaging/agent.service"
	systemd-analyze security --offline=yes --no-pager packaging/agent.service 2>/dev/null | tail -n 1
fi

if ! $install_mode; then
	step "done (install, upgrade and purge skipped: set CI=true or AGENT_PACKAGE_TEST_INSTALL=1, as root, on a throwaway machine)"
	exit 0
fi

step "build $V2 ($HOST_ARCH) for the upgrade"
make -s package VERSION=$V2 DIST="$tmp/v2" PKG_ARCHES="$HOST_ARCH" GO="$GO" >"$tmp/build2.log" 2>&1 || {
	cat "$tmp/build2.log"
	fail "make package VERSION=$V2"
}
deb2=$tmp/v2/agent_${V2}-1_${HOST_ARCH}.deb

step "dpkg -i agent $V1"
installed=true
dpkg -i "$deb" </dev/null
dpkg-query -W -f '${Status} ${Version}\n' agent | grep -x >/dev/null "install ok installed $V1-1" || fail "agent $V1 is not installed"

step "the user, the files and their modes"
getent passwd agent >/dev/null || fail "no user agent"
[ "$(getent passwd agent | cut -d: -f6,7)" = /var/lib/agent:/usr/sbin/nologin ] ||
	fail "user agent: home and shell are $(getent passwd agent | cut -d: -f6,7)"
if getent group adm >/dev/null; then
	id -nG agent | tr ' ' '\n' | grep -x >/dev/null adm || fail "user agent is not in group adm"
fi
expect_mode /usr/bin/agent 755 root root
expect_mode /usr/lib/systemd/system/agent.service 644 root root
expect_mode /etc/agent/agent.yaml 640 root agent
expect_mode /var/lib/agent 750 agent agent
[ -L /etc/systemd/system/multi-user.target.wants/agent.service ] || fail "agent.service is not enabled"

step "run the installed binary"
/usr/bin/agent version | tee "$tmp/version"
grep -qx "agent $V1" "$tmp/version" || fail "agent version does not say $V1"
grep -qx "commit: $commit" "$tmp/version" || fail "agent version does not name commit $commit"
grep -q '^built: ' "$tmp/version" || fail "agent version has no build date"
# As the service runs it: the agent user must be able to read the config.
runuser -u agent -- /usr/bin/agent validate -c /etc/agent/agent.yaml || fail "agent validate of the shipped config"

step "agent run as the agent user: starts on the shipped config, SIGTERM exits 0"
# The shipped config with the admin endpoint off (port 7219 may be taken
# on a shared machine), in the state directory so the agent user reads it.
sed 's/^state_dir: .*/&\nadmin:\n  listen: "off"/' /etc/agent/agent.yaml >/var/lib/agent/test-run.yaml
chown agent:agent /var/lib/agent/test-run.yaml
setpriv --reuid=agent --regid=agent --init-groups \
	/usr/bin/agent run -c /var/lib/agent/test-run.yaml 2>"$tmp/run.log" &
run_pid=$!
for _ in $(seq 1 300); do
	grep -q 'agent running' "$tmp/run.log" && break
	kill -0 "$run_pid" 2>/dev/null || break
	sleep 0.1
done
grep -q 'agent running' "$tmp/run.log" || {
	cat "$tmp/run.log"
	fail "agent run did not start as the agent user"
}
kill -TERM "$run_pid"
run_rc=0
wait "$run_pid" || run_rc=$?
[ "$run_rc" = 0 ] || {
	cat "$tmp/run.log"
	fail "agent run exited $run_rc after SIGTERM"
}
[ -d /var/lib/agent/spool/example ] || fail "agent run made no spool in /var/lib/agent"
[ "$(stat -c %U /var/lib/agent/spool/example)" = agent ] || fail "the spool is not owned by agent"
rm /var/lib/agent/test-run.yaml

step "systemd-analyze verify on the installed unit"
systemd-analyze verify /usr/lib/systemd/system/agent.service || fail "systemd-analyze verify"

step "edit the config, leave state behind, upgrade to $V2"
sed -i 's|/var/log/agent-example/\*.log|/var/log/agent-test-edited/*.log|' /etc/agent/agent.yaml
grep -q agent-test-edited /etc/agent/agent.yaml || fail "the config edit did not apply"
runuser -u agent -- sh -c 'echo state >/var/lib/agent/test-marker'
dpkg -i "$deb2" </dev/null
dpkg-query -W -f '${Status} ${Version}\n' agent | grep -x >/dev/null "install ok installed $V2-1" || fail "agent $V2 is not installed"
[ "$(/usr/bin/agent version | head -n 1)" = "agent $V2" ] || fail "agent version after the upgrade is not $V2"
grep -q agent-test-edited /etc/agent/agent.yaml || fail "the upgrade overwrote the edited config"
[ ! -e /etc/agent/agent.yaml.dpkg-new ] || fail "the upgrade left agent.yaml.dpkg-new"
expect_mode /etc/agent/agent.yaml 640 root agent
[ -f /var/lib/agent/test-marker ] || fail "the upgrade lost the state in /var/lib/agent"
runuser -u agent -- /usr/bin/agent validate -c /etc/agent/agent.yaml || fail "agent validate of the edited config"

step "dpkg -r: binary gone, config and state kept"
dpkg -r agent </dev/null
[ ! -e /usr/bin/agent ] || fail "/usr/bin/agent is still there after remove"
[ ! -e /usr/lib/systemd/system/agent.service ] || fail "the unit is still there after remove"
grep -q agent-test-edited /etc/agent/agent.yaml || fail "remove deleted the config"
[ -f /var/lib/agent/test-marker ] || fail "remove deleted the state"
dpkg-query -W -f '${Status}\n' agent | grep -x >/dev/null 'deinstall ok config-files' || fail "not in config-files state after remove"

step "dpkg --purge: config and state gone, the unit neither enabled nor masked"
dpkg --purge agent </dev/null
installed=false
[ ! -e /var/lib/agent ] || fail "purge left /var/lib/agent"
[ ! -e /etc/agent ] || fail "purge left /etc/agent: $(ls -la /etc/agent)"
[ ! -e /etc/systemd/system/multi-user.target.wants/agent.service ] || fail "purge left the unit enabled"
[ ! -e /etc/systemd/system/agent.service ] && [ ! -L /etc/systemd/system/agent.service ] || fail "purge left the unit masked"
case "$(dpkg-query -W -f '${Status}' agent 2>/dev/null || true)" in
"" | *not-installed) ;;
*) fail "dpkg still has the package after purge" ;;
esac
getent passwd agent >/dev/null || fail "purge removed the agent user (it should stay, Debian convention)"

step "ok"
