# agent (rpm) %preun: on erase ($1 = 0), disable and stop the service.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload disable agent.service >/dev/null 2>&1 || :
	if [ -d /run/systemd/system ]; then
		systemctl stop agent.service >/dev/null 2>&1 || :
	fi
fi
exit 0
