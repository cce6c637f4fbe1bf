// Package bucket implements kohya sd-scripts' aspect-ratio bucketing
// (../shared/spec/bucket.md §1–5): the predefined bucket list
// (make_bucket_resolutions), assignment of an image to a bucket in both
// modes (BucketManager.select_bucket; bucket_no_upscale off and on), and
// the resize-and-crop that turns an image into bucket pixels
// (trim_and_resize_if_required).
//
// All sizes are (width, height) in pixels. Arithmetic follows the Python
// code step by step in float64 and integer division, so results are the
// same as kohya's, including its rounding (int(x + 0.5)).
package bucket
