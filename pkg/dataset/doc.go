// Package dataset finds the images of Kohya-style dataset folders
// (../shared/spec/dataset.md §1–6) and turns them into manifest records:
// concept-folder names ("<repeats>_<caption>"), image discovery, caption
// files, regularization balancing, and per-file size, orientation and
// sha256 (hashed by a bounded set of workers).
//
// Output order is deterministic: train roots then reg roots in the order
// given, concept folders sorted by name, images sorted by path. kohya visits
// concept folders in directory-listing order; sorting is the reproducible
// choice the spec asks for.
//
// Deliberate differences from kohya sd-scripts, each documented where it is
// implemented: the EXIF orientation is applied (kohya ignores it), image
// extensions match case-insensitively (kohya finds only all-lower and
// all-upper case), and a bad file or folder is skipped with a warning (or
// fails the scan with Strict) instead of failing later in training.
package dataset
