// Package sdnotify tells systemd about the service's state (Type=notify)
// through the datagram socket named by $NOTIFY_SOCKET. Without it, every
// call is a no-op.
package sdnotify

import (
	"net"
	"os"
)

// Send sends state (e.g. "READY=1") to systemd. It returns nil when not
// running under systemd's notify protocol.
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
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// Ready reports that start-up finished.
func Ready() error { return Send("READY=1") }

// Stopping reports that shutdown began.
func Stopping() error { return Send("STOPPING=1") }
