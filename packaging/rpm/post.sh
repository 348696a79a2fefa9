# agent (rpm) %post: on first install the unit is enabled or not as the
# distribution's presets say (Fedora/RHEL convention: not started). $1: 1 on
# install, 2 on upgrade. Works without a running systemd.
if [ ! -d /var/lib/agent ]; then
	install -d -m 0750 -o agent -g agent /var/lib/agent
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload preset agent.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
