package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// SchemaVersion is the record schema written by this version of loco.
// Readers refuse records with a newer version.
const SchemaVersion = 1

// Caption sources (Record.CaptionSource).
const (
	CaptionFromFile   = "file"   // a caption file next to the image
	CaptionFromFolder = "folder" // the concept folder name minus the repeats
)

// Record is one image of the dataset.
type Record struct {
	Schema int `json:"schema"`

	// The file.
	Path   string `json:"path"`   // as found by the scan (root joined with the relative path)
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // hex sha256 of the file bytes
	Format string `json:"format"` // jpeg, png, webp, bmp (from the content, not the extension)

	// Pixel sizes: stored, then after the EXIF orientation (1..8, 1 = none).
	Width           int `json:"width"`
	Height          int `json:"height"`
	ExifOrientation int `json:"exif_orientation"`
	OrientedWidth   int `json:"oriented_width"`
	OrientedHeight  int `json:"oriented_height"`

	// The dataset (Kohya folder convention).
	Concept     string `json:"concept"`        // concept folder name, e.g. "30_pralyco woman"
	Repeats     int    `json:"repeats"`        // from the folder name
	Trigger     string `json:"trigger"`        // informational: first word of the folder caption
	Class       string `json:"class"`          // informational: the rest of the folder caption
	Caption     string `json:"caption"`        // the caption used for training
	CaptionSrc  string `json:"caption_source"` // CaptionFromFile or CaptionFromFolder
	CaptionFile string `json:"caption_file,omitempty"`
	IsReg       bool   `json:"is_reg"`
	// RegRepeats is, for a regularization image, how many times it is used
	// per epoch after kohya's balancing against the train samples
	// (dataset.md §6); 0 means kohya never uses it. Nil for train images.
	RegRepeats *int `json:"reg_repeats,omitempty"`

	// Added by loco-bucket.
	Bucket      *[2]int  `json:"bucket,omitempty"`       // [w, h]
	Resized     *[2]int  `json:"resized,omitempty"`      // [w, h] before the crop
	Crop        *[4]int  `json:"crop,omitempty"`         // [left, top, right, bottom] in the resized image
	AspectError *float64 `json:"aspect_error,omitempty"` // bucket w/h minus image w/h

	// Extra holds the fields this version does not know, as raw JSON.
	Extra map[string]json.RawMessage `json:"-"`
}

// EpochRepeats is the number of times the record is used per epoch: the
// folder repeats for a train image, the balanced repeats for a reg image.
func (r *Record) EpochRepeats() int {
	if r.IsReg && r.RegRepeats != nil {
		return *r.RegRepeats
	}
	return r.Repeats
}

// recordFields is the set of JSON names of Record's known fields.
var recordFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[Record]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

// IsKnownField reports whether name is a field of this schema version.
func IsKnownField(name string) bool { return recordFields[name] }

type plainRecord Record // no methods: the default JSON encoding

// MarshalJSON writes the known fields in declaration order, then Extra
// sorted by key. Extra keys that collide with known fields are dropped.
func (r Record) MarshalJSON() ([]byte, error) {
	b, err := marshalNoEscape(plainRecord(r))
	if err != nil {
		return nil, err
	}
	if len(r.Extra) == 0 {
		return b, nil
	}
	keys := make([]string, 0, len(r.Extra))
	for k := range r.Extra {
		if !recordFields[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1]) // without the closing brace
	for _, k := range keys {
		kb, _ := marshalNoEscape(k)
		v := r.Extra[k]
		if !json.Valid(v) {
			return nil, fmt.Errorf("manifest: extra field %q holds invalid JSON", k)
		}
		buf.WriteByte(',')
		buf.Write(kb)
		buf.WriteByte(':')
		if err := json.Compact(&buf, v); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON reads the known fields and keeps the others in Extra.
func (r *Record) UnmarshalJSON(b []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	var p plainRecord
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Record(p)
	for k, v := range all {
		if !recordFields[k] {
			if r.Extra == nil {
				r.Extra = map[string]json.RawMessage{}
			}
			r.Extra[k] = append(json.RawMessage(nil), v...)
		}
	}
	return nil
}

func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // captions may hold <, >, &: keep them readable
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
