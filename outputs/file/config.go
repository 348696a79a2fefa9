package file

import (
	"errors"
	"fmt"

	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs/internal/encode"
)

// Format names (Config.Format).
const (
	FormatNDJSON  = encode.FormatNDJSON  // the record in its Encoding and "\n"
	FormatKPLJSON = encode.FormatKPLJSON // {"pk":..,"ehk":..,"data":base64} and "\n"
)

// Encoding names (Config.Encoding).
const (
	EncodingJSON = encode.EncodingNameJSON
	EncodingText = encode.EncodingNameText
)

// Config is the user configuration of a file output (outputs[].file).
type Config struct {
	// Dir receives the file <output name>.ndjson. One of Dir and Path.
	Dir string `yaml:"dir"`
	// Path is the file to append to, instead of Dir/<name>.ndjson.
	Path string `yaml:"path"`
	// Format is ndjson (default) or kpl-json.
	Format string `yaml:"format"`
	// Encoding is how ndjson writes a record: json (default: one JSON
	// object per line, the record itself when it is a JSON object, else
	// {"message":"..."}) or text (the bytes as they are, a line break inside
	// a record written as \n). kpl-json ignores it.
	Encoding string `yaml:"encoding"`
	// MaxFileBytes rotates the file before a batch would take it past this
	// size: it is renamed <stem>-<UTC time><ext> and a new one started. A
	// batch is never split, so a file can exceed it by one batch when it
	// was empty. 0 (default) never rotates.
	MaxFileBytes units.ByteSize `yaml:"max_file_bytes"`
	// MaxBackups is how many rotated files are kept, oldest deleted first;
	// 0 (default) keeps them all.
	MaxBackups int `yaml:"max_backups"`
}

// DefaultConfig returns the defaults; Dir or Path must still be set.
func DefaultConfig() Config { return Config{Format: FormatNDJSON} }

// Validate checks c without I/O. Each problem is prefixed by its YAML key.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Dir == "" && c.Path == "":
		errs = append(errs, errors.New("dir: required (or path)"))
	case c.Dir != "" && c.Path != "":
		errs = append(errs, errors.New("path: set together with dir (choose one)"))
	}
	if _, err := encode.ParseLineFormat(c.Format); err != nil {
		errs = append(errs, fmt.Errorf("format: %w", err))
	}
	if _, err := encode.ParseEncoding(c.Encoding, encode.EncodingJSON); err != nil {
		errs = append(errs, fmt.Errorf("encoding: %w", err))
	}
	if c.MaxFileBytes < 0 {
		errs = append(errs, fmt.Errorf("max_file_bytes: negative (%d)", int64(c.MaxFileBytes)))
	}
	if c.MaxBackups < 0 {
		errs = append(errs, fmt.Errorf("max_backups: negative (%d)", c.MaxBackups))
	}
	return errors.Join(errs...)
}

// UsesPartitionKey: kpl-json writes each record's partition key ("pk");
// ndjson writes the records alone (outputs.KeyUser).
func (c *Config) UsesPartitionKey() (bool, string) {
	return c.UsesExplicitHashKey()
}

// UsesExplicitHashKey: kpl-json writes each record's explicit hash key
// ("ehk"); ndjson writes the records alone (outputs.HashKeyUser).
func (c *Config) UsesExplicitHashKey() (bool, string) {
	if c.Format == FormatKPLJSON {
		return true, ""
	}
	return false, "format " + FormatNDJSON
}
