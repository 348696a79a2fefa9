# agent (rpm) %postun: after an upgrade ($1 >= 1) restart the service if it
# runs. The state in /var/lib/agent and the user are kept on erase (rpm has
# no purge): delete them by hand with rm -rf /var/lib/agent.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart agent.service >/dev/null 2>&1 || :
	fi
fi
exit 0
