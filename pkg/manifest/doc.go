// Package manifest defines the record that flows through the loco pipes:
// one JSON object per line (JSON Lines), one record per image.
//
// loco-scan fills the image and dataset fields, loco-bucket adds the bucket
// fields, later tools add their own. Every record carries the schema version
// it was written with (field "schema"). Fields this version does not know
// are kept in Record.Extra and written back unchanged (after the known
// fields, sorted by name), so records survive being passed through an older
// tool or edited with jq.
//
// Sizes are in pixels, (width, height) order; byte sizes in bytes.
// Width/Height are the stored size, OrientedWidth/OrientedHeight the size
// after applying the EXIF orientation, which is what bucketing uses (a
// documented difference from kohya sd-scripts, which ignores EXIF).
package manifest
