# agent (rpm) %pre: the system user and group exist before files are
# installed. $1: 1 on install, 2 on upgrade.
if ! getent group agent >/dev/null; then
	groupadd --system agent
fi
if ! getent passwd agent >/dev/null; then
	useradd --system --gid agent --no-create-home --home-dir /var/lib/agent \
		--shell /sbin/nologin --comment "agent log shipper" agent
fi
# Group adm reads /var/log on most distributions.
if getent group adm >/dev/null && ! id -nG agent | tr ' ' '\n' | grep -qx adm; then
	usermod --append --groups adm agent
fi
exit 0
