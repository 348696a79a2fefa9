package process

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"regexp"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Partition key policies (KeyConfig.Kind).
const (
	KeyRandom        = "random"        // one random key per aggregate (the default)
	KeyDeterministic = "deterministic" // a hash of the record's data
	KeyField         = "field"         // a field of the JSON record
	KeyRegex         = "regex"         // a capture group of a regex on the record's text
	KeyFixed         = "fixed"         // one value for every record
	KeyHostname      = "hostname"      // the host name
)

// KeyConfig is flows[].partition_key: a policy name (random,
// deterministic, hostname) or a mapping with one of field, regex or fixed:
//
//	partition_key: {field: user_id, fallback: random}
//	partition_key: {regex: 'user=(\w+)', group: 1}
//	partition_key: {fixed: my-key}
//
// A record without the field, or not matching the regex, gets the fallback
// policy (random by default, or deterministic): it is never dropped.
type KeyConfig struct {
	Kind     string
	Field    string
	Regex    string
	Group    int
	Fixed    string
	Fallback string
}

// Key makes a KeyConfig of a policy name.
func Key(kind string) KeyConfig { return KeyConfig{Kind: kind} }

// UnmarshalYAML takes a policy name or a mapping.
func (k *KeyConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*k = KeyConfig{Kind: s}
		return nil
	}
	var m struct {
		Field    *string `yaml:"field"`
		Regex    *string `yaml:"regex"`
		Group    *int    `yaml:"group"`
		Fixed    *string `yaml:"fixed"`
		Fallback string  `yaml:"fallback"`
	}
	dec := n
	if err := dec.Decode(&m); err != nil {
		return err
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "field", "regex", "group", "fixed", "fallback":
		default:
			return fmt.Errorf("line %d: partition_key: unknown key %q (want field, regex, group, fixed or fallback)", n.Content[i].Line, n.Content[i].Value)
		}
	}
	*k = KeyConfig{Fallback: m.Fallback, Group: 1}
	set := 0
	if m.Field != nil {
		k.Kind, k.Field = KeyField, *m.Field
		set++
	}
	if m.Regex != nil {
		k.Kind, k.Regex = KeyRegex, *m.Regex
		set++
	}
	if m.Fixed != nil {
		k.Kind, k.Fixed = KeyFixed, *m.Fixed
		set++
	}
	if m.Group != nil {
		k.Group = *m.Group
	}
	if set != 1 {
		return fmt.Errorf("line %d: partition_key: want exactly one of field, regex or fixed", n.Line)
	}
	return nil
}

// MarshalYAML writes the policy back (a name, or the mapping).
func (k KeyConfig) MarshalYAML() (any, error) {
	switch k.Kind {
	case KeyField:
		return map[string]any{"field": k.Field, "fallback": k.Fallback}, nil
	case KeyRegex:
		return map[string]any{"regex": k.Regex, "group": k.Group, "fallback": k.Fallback}, nil
	case KeyFixed:
		return map[string]any{"fixed": k.Fixed}, nil
	}
	return k.Kind, nil
}

// ParseKeyFlag parses `agent tail --partition-key`: random, deterministic,
// hostname, field:NAME, regex:RE (group 1) or fixed:VALUE.
func ParseKeyFlag(s string) KeyConfig {
	kind, arg, ok := strings.Cut(s, ":")
	if !ok {
		return KeyConfig{Kind: s}
	}
	k := KeyConfig{Kind: kind, Group: 1}
	switch kind {
	case KeyField:
		k.Field = arg
	case KeyRegex:
		k.Regex = arg
	case KeyFixed:
		k.Fixed = arg
	default:
		k.Kind = s // reported by Validate
	}
	return k
}

// Validate checks k; messages are relative to partition_key.
func (k KeyConfig) Validate() error {
	switch k.Kind {
	case "", KeyRandom, KeyDeterministic, KeyHostname:
	case KeyField:
		if k.Field == "" {
			return fmt.Errorf("field: required")
		}
		if !validPath(k.Field) {
			return fmt.Errorf("field: %q: want a name or a path of names (a.b.c)", k.Field)
		}
	case KeyRegex:
		re, err := regexp.Compile(k.Regex)
		if err != nil {
			return fmt.Errorf("regex: %w", err)
		}
		if k.Group < 0 || k.Group > re.NumSubexp() {
			return fmt.Errorf("group: %d, but the regex has %d groups", k.Group, re.NumSubexp())
		}
	case KeyFixed:
		if k.Fixed == "" {
			return fmt.Errorf("fixed: must not be empty")
		}
	default:
		return fmt.Errorf("unknown %q (want random, deterministic, hostname, or a mapping with field, regex or fixed)", k.Kind)
	}
	switch k.Fallback {
	case "", KeyRandom, KeyDeterministic:
	default:
		return fmt.Errorf("fallback: unknown %q (want random or deterministic)", k.Fallback)
	}
	return nil
}

// MaxKeyChars is the longest partition key Kinesis takes (in Unicode
// characters). Longer keys are hashed down (FitKey).
const MaxKeyChars = 256

// FitKey returns key, or for a key longer than MaxKeyChars the hex
// SHA-256 of it (64 characters): records with the same long key still share
// a shard.
func FitKey(key []byte) string {
	if len(key) <= MaxKeyChars || utf8.RuneCount(key) <= MaxKeyChars {
		return string(key)
	}
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:])
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// AppendHashKey appends the deterministic key of data: two independent
// 32-bit CRCs, in hex.
func AppendHashKey(dst, data []byte) []byte {
	var raw [8]byte
	binary.BigEndian.PutUint32(raw[:4], crc32.Checksum(data, crc32c))
	binary.BigEndian.PutUint32(raw[4:], crc32.ChecksumIEEE(data))
	return hex.AppendEncode(dst, raw[:])
}
