package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kplagent/agent/aggregate"
)

const kplUsage = `usage:
  agent kpl decode [--pk KEY] [--ehk KEY] [--skip-md5] [FILE... | -]
      Prints the user records of Kinesis records, one JSON line each:
      {"record", "seq", "sub", "aggregated", "pk", "ehk", "data" (base64),
      "text" (when data is valid UTF-8), "tags"}.
      FILE: raw binary, one Kinesis record per file. Without FILE or with -:
      stdin, one base64 record per line, or JSON: the output of
      'aws kinesis get-records', a Lambda Kinesis event, or record objects
      ({"Data", "PartitionKey", "ExplicitHashKey", "SequenceNumber"}).
      --pk/--ehk: the keys of plain (non-aggregated) records from files or
      base64 lines. --skip-md5: decode aggregates whose MD5 does not match.
      Exit status 1 if a record fails to decode (named on stderr).
  agent kpl encode [--pk KEY] [--ehk KEY] [--max-bytes N] [--max-records N] [--json]
      Aggregates stdin, one user record per line, and prints one Kinesis
      record per line: base64 data, or with --json an object decode reads
      back ({"PartitionKey", "ExplicitHashKey", "Data"}).
`

// runKPL implements `agent kpl ...`: exit 0 ok, 1 a record failed, 2 usage.
func runKPL(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, kplUsage)
		return 2
	}
	switch args[0] {
	case "decode":
		return kplDecode(args[1:], stdin, stdout, stderr)
	case "encode":
		return kplEncode(args[1:], stdin, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, kplUsage)
		return 0
	}
	fmt.Fprintf(stderr, "agent kpl: unknown command %q\n%s", args[0], kplUsage)
	return 2
}

// kplFlags returns a flag set for a kpl subcommand; parse errors print the
// usage to stderr.
func kplFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("agent kpl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), kplUsage) }
	return fs
}

// kinesisRecord is one Kinesis record to decode and what names it.
type kinesisRecord struct {
	name    string // file name, "stdin line N", "stdin record N"
	seq     string
	pk, ehk string
	data    []byte
}

// userRecordLine is the JSON line printed per user record.
type userRecordLine struct {
	Record     string          `json:"record"`
	Seq        string          `json:"seq,omitempty"`
	Sub        int             `json:"sub"`
	Aggregated bool            `json:"aggregated"`
	PK         string          `json:"pk"`
	EHK        string          `json:"ehk"`
	Data       []byte          `json:"data"`
	Text       *string         `json:"text,omitempty"`
	Tags       []aggregate.Tag `json:"tags,omitempty"`
}

func kplDecode(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := kplFlags("decode", stderr)
	pk := fs.String("pk", "", "partition key of plain records")
	ehk := fs.String("ehk", "", "explicit hash key of plain records")
	skipMD5 := fs.Bool("skip-md5", false, "decode aggregates even if their MD5 does not match")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)

	failed := 0
	fail := func(name string, err error) {
		out.Flush() // keep stdout and stderr in order on a terminal
		fmt.Fprintf(stderr, "agent kpl decode: %s: %v\n", name, err)
		failed++
	}
	decode := func(kr kinesisRecord) {
		recs, err := decodeKinesisRecord(kr, *skipMD5)
		if err != nil {
			fail(kr.name, err)
			return
		}
		aggregated := aggregate.IsAggregated(kr.data)
		for i, r := range recs {
			line := userRecordLine{Record: kr.name, Seq: kr.seq, Sub: i, Aggregated: aggregated,
				PK: r.PartitionKey, EHK: r.ExplicitHashKey, Data: r.Data, Tags: r.Tags}
			if utf8.Valid(r.Data) {
				text := string(r.Data)
				line.Text = &text
			}
			if err := enc.Encode(line); err != nil {
				fail(kr.name, err)
				return
			}
		}
	}

	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	for _, name := range files {
		if name == "-" {
			if err := readStdinRecords(stdin, *pk, *ehk, decode, fail); err != nil {
				fail("stdin", err)
			}
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			fail(name, err)
			continue
		}
		decode(kinesisRecord{name: name, pk: *pk, ehk: *ehk, data: data})
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "agent kpl decode: %v\n", err)
		return 1
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "agent kpl decode: %d record(s) failed to decode\n", failed)
		return 1
	}
	return 0
}

// decodeKinesisRecord decodes one Kinesis record, verifying the MD5 of an
// aggregate unless skipMD5.
func decodeKinesisRecord(kr kinesisRecord, skipMD5 bool) ([]aggregate.Record, error) {
	recs, err := aggregate.DecodeKinesisRecord(kr.pk, kr.ehk, kr.data)
	if err == nil || !skipMD5 || len(kr.data) < 20 {
		return recs, err
	}
	// Decode the body as it is: a debugging aid for damaged records.
	a := aggregate.Aggregate{Aggregated: true, Body: kr.data[4 : len(kr.data)-16]}
	recs = recs[:0]
	err = aggregate.ForEach(&a, func(pk, ehk, data []byte) error {
		recs = append(recs, aggregate.Record{PartitionKey: string(pk), ExplicitHashKey: string(ehk), Data: data})
		return nil
	})
	return recs, err
}

// readStdinRecords reads Kinesis records from stdin: JSON if it starts with
// '{' or '[', else one base64 record per line. A record that cannot be read
// goes to fail; only a read error or malformed JSON stops reading.
func readStdinRecords(stdin io.Reader, pk, ehk string, decode func(kinesisRecord), fail func(string, error)) error {
	in := bufio.NewReaderSize(stdin, 64<<10)
	// Look past leading white space, without consuming it (line numbers).
	for i := 1; ; i++ {
		b, err := in.Peek(i)
		if len(b) < i {
			if err == io.EOF || err == bufio.ErrBufferFull {
				break // empty, or a very long first line: base64
			}
			return err
		}
		if c := b[i-1]; c == '{' || c == '[' {
			return readJSONRecords(in, decode, fail)
		} else if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			break
		}
	}
	for n := 1; ; n++ {
		line, long, err := readLineMax(in, maxBase64Line)
		if err != nil && err != io.EOF {
			return err
		}
		if long {
			fail(fmt.Sprintf("stdin line %d", n), fmt.Errorf("longer than %d bytes: not a base64 Kinesis record (at most 1 MiB of data); skipped", maxBase64Line))
		} else if line = bytes.TrimSpace(line); len(line) > 0 {
			name := fmt.Sprintf("stdin line %d", n)
			if data, derr := decodeBase64(string(line)); derr != nil {
				fail(name, fmt.Errorf("not base64: %w", derr))
			} else {
				decode(kinesisRecord{name: name, pk: pk, ehk: ehk, data: data})
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// maxBase64Line bounds a line of base64 on stdin: a Kinesis record holds at
// most 1 MiB of data (1.4 MiB in base64). A longer line (binary data piped
// by mistake, /dev/zero) is skipped, not held in memory whole.
const maxBase64Line = 2 << 20

// readLineMax reads up to and including the next '\n' (or to EOF). A line
// longer than max is read to its end and discarded: long is set and line
// is nil.
func readLineMax(in *bufio.Reader, max int) (line []byte, long bool, err error) {
	for {
		frag, ferr := in.ReadSlice('\n')
		if !long {
			if len(line)+len(frag) > max {
				long, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if ferr != bufio.ErrBufferFull {
			return line, long, ferr
		}
	}
}

// decodeBase64 accepts standard base64, padded or not, strictly: text that
// no encoder writes ("zz", whose last bits are not zero) is an error, not
// decoded into bytes that were never sent.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") || len(s)%4 == 0 {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// jsonRecord is a Kinesis record in the shapes of the AWS CLI (get-records),
// of Lambda events (kinesis.*) and of kpl encode --json.
type jsonRecord struct {
	Data            *string         `json:"Data"`
	PartitionKey    string          `json:"PartitionKey"`
	ExplicitHashKey string          `json:"ExplicitHashKey"`
	SequenceNumber  string          `json:"SequenceNumber"`
	Records         json.RawMessage `json:"Records"` // get-records output, Lambda event
	Kinesis         json.RawMessage `json:"kinesis"` // a Lambda event record
}

// readJSONRecords reads JSON values (objects or arrays of them) until EOF.
// JSON field names match case-insensitively, so Lambda's data/partitionKey
// match too.
func readJSONRecords(in io.Reader, decode func(kinesisRecord), fail func(string, error)) error {
	dec := json.NewDecoder(in)
	n := 0
	var walk func(raw json.RawMessage) error
	walk = func(raw json.RawMessage) error {
		raw = bytes.TrimSpace(raw)
		if string(raw) == "null" {
			return nil
		}
		if len(raw) > 0 && raw[0] == '[' {
			var items []json.RawMessage
			if err := json.Unmarshal(raw, &items); err != nil {
				return err
			}
			for _, item := range items {
				if err := walk(item); err != nil {
					return err
				}
			}
			return nil
		}
		var r jsonRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		switch {
		case r.Kinesis != nil:
			return walk(r.Kinesis)
		case r.Records != nil:
			return walk(r.Records)
		}
		n++
		name := fmt.Sprintf("stdin record %d", n)
		if r.SequenceNumber != "" {
			name += " (sequence number " + r.SequenceNumber + ")"
		}
		if r.Data == nil {
			fail(name, errors.New("no Data field"))
			return nil
		}
		data, err := decodeBase64(*r.Data)
		if err != nil {
			fail(name, fmt.Errorf("Data is not base64: %w", err))
			return nil
		}
		decode(kinesisRecord{name: name, seq: r.SequenceNumber, pk: r.PartitionKey, ehk: r.ExplicitHashKey, data: data})
		return nil
	}
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("JSON input: %w", err)
		}
		if err := walk(raw); err != nil {
			return err
		}
	}
}

func kplEncode(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := kplFlags("encode", stderr)
	pk := fs.String("pk", "pk", "partition key of every user record")
	ehk := fs.String("ehk", "", "explicit hash key of every user record")
	maxBytes := fs.Int("max-bytes", aggregate.DefaultMaxBytes, "largest aggregate, bytes")
	maxRecords := fs.Int("max-records", aggregate.DefaultMaxRecords, "most user records per aggregate")
	asJSON := fs.Bool("json", false, "print JSON objects instead of base64 lines")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agent kpl encode: unexpected argument %q (records are read from stdin)\n", fs.Arg(0))
		return 2
	}
	b, err := aggregate.NewBuilder(aggregate.Config{MaxBytes: *maxBytes, MaxRecords: *maxRecords}, nil)
	if err != nil {
		fmt.Fprintf(stderr, "agent kpl encode: %v\n", err)
		return 2
	}
	out := bufio.NewWriter(stdout)
	enc := json.NewEncoder(out)
	var data []byte
	emit := func(_ int, a *aggregate.Aggregate) error {
		data = a.AppendKinesisData(data[:0])
		if *asJSON {
			return enc.Encode(struct {
				PartitionKey    string
				ExplicitHashKey string `json:",omitempty"`
				Data            []byte
			}{a.PartitionKey, a.ExplicitHashKey, data})
		}
		_, err := fmt.Fprintln(out, base64.StdEncoding.EncodeToString(data))
		return err
	}
	in := bufio.NewReaderSize(stdin, 64<<10)
	now := time.Time{} // no age limit: aggregates close on size, count and EOF
	for n := 1; ; n++ {
		line, rerr := in.ReadBytes('\n')
		if rerr != nil && rerr != io.EOF {
			fmt.Fprintf(stderr, "agent kpl encode: %v\n", rerr)
			return 1
		}
		if len(line) > 0 || rerr == nil {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if _, err := b.Add(aggregate.Record{PartitionKey: *pk, ExplicitHashKey: *ehk, Data: line}, now, emit); err != nil {
				out.Flush()
				fmt.Fprintf(stderr, "agent kpl encode: stdin line %d: %v\n", n, err)
				return 1
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	if err := b.FlushAll(emit); err != nil {
		fmt.Fprintf(stderr, "agent kpl encode: %v\n", err)
		return 1
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "agent kpl encode: %v\n", err)
		return 1
	}
	return 0
}
