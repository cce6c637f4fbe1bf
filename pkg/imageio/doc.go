// Package imageio reads the image files of a dataset: their format and
// pixel size from the header without decoding pixels (Probe), the EXIF
// orientation (JPEG's APP1 segment, PNG's eXIf chunk, WebP's EXIF chunk,
// with a small TIFF reader of our own), and full decoding to 8-bit RGB with
// the orientation applied (Decode).
//
// Formats: JPEG, PNG, WebP (golang.org/x/image/webp), BMP
// (golang.org/x/image/bmp) — kohya's list minus the optional AVIF/JPEG XL.
//
// Decoded images are *image.NRGBA with alpha forced to 255: like kohya
// (Pillow's convert("RGB")), alpha is dropped without compositing, so the
// colour stored under transparent pixels is what is used.
//
// Orientation values are the EXIF/TIFF ones, 1..8; 1 means "as stored".
// kohya sd-scripts ignores the orientation; loco applies it (dataset.md §3).
package imageio
