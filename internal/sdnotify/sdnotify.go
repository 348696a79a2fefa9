// Package sdnotify tells systemd about the service's state (Type=notify)
// through the datagram socket named by $NOTIFY_SOCKET (sd_notify(3)).
// Without it, every call is a no-op.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Send sends state (e.g. "READY=1", or several NAME=value lines) to
// systemd. It returns nil when not running under systemd's notify protocol.
func Send(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err = conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Enabled reports whether systemd listens ($NOTIFY_SOCKET is set).
func Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Ready reports that start-up finished.
func Ready() error { return Send("READY=1") }

// Stopping reports that shutdown began.
func Stopping() error { return Send("STOPPING=1") }

// Status sets the one-line status `systemctl status` shows.
func Status(s string) error { return Send("STATUS=" + s) }

// Watchdog tells systemd's watchdog the service is alive.
func Watchdog() error { return Send("WATCHDOG=1") }

// Reloading reports that a configuration reload began; Ready ends it. The
// message carries the monotonic clock's time, as Type=notify-reload requires.
func Reloading() error {
	return Send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
}

// WatchdogInterval returns the interval systemd expects pings at
// (WatchdogSec=, passed as $WATCHDOG_USEC), and false when the watchdog is
// off or meant for another process ($WATCHDOG_PID).
func WatchdogInterval() (time.Duration, bool) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, false
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	n, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return time.Duration(n) * time.Microsecond, true
}
