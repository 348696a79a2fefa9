package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
)

// floor is the least any shipper of the log to the sink must do: read the
// file in 1 MiB chunks and POST each (cut after its last line break, so that
// the sink counts whole lines), one request at a time on one connection. No
// line splitting, no framing, no checkpoint. `bench-e2e -floor URL -log FILE`
// runs it in a process of its own, measured like the agent.
func floor(url, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const chunk = 1 << 20
	buf := make([]byte, 0, 2*chunk)
	client := &http.Client{}
	var rd bytes.Reader
	for eof := false; !eof; {
		n, err := io.ReadFull(f, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+n]
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			eof = true
		default:
			return err
		}
		end := len(buf)
		if !eof {
			end = bytes.LastIndexByte(buf, '\n') + 1
		}
		if end > 0 {
			rd.Reset(buf[:end])
			resp, err := client.Post(url, "application/octet-stream", &rd)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("sink answered %s", resp.Status)
			}
		}
		buf = buf[:copy(buf, buf[end:])]
	}
	return nil
}
