// Package latentcache is loco's on-disk latent cache: the VAE posterior of
// every training image (mean and log-variance, fp16), computed once by
// loco-encode and read by every training run (spec/latents.md §6).
//
// A cache is a folder:
//
//	index.json          keys → (shard, offset, length, crc32c, shape, bucket, …)
//	                    plus the VAEs the entries came from (hash, file, dtype)
//	shard-NNNNNN.zst    a sequence of independently compressed zstd frames,
//	                    each holding one msgpack Entry
//	writer.lock         flock(2)-ed by the one writer (Cache.Lock)
//
// Invariants:
//   - Entries are content-addressed: Key hashes the image bytes' sha256, the
//     decode and resize settings, bucket, resized size, crop, flip, the VAE
//     weights' hash, the encoder dtype and FormatVersion. Captions, repeats
//     and regularization flags are not in the key (image-side only).
//   - Shards are append-only and immutable: a shard is written under a
//     temporary name, synced and renamed when complete, and only then is the
//     index (rewritten whole, temporary name + rename) pointing into it. A
//     killed writer leaves at most an unreferenced temporary file, which the
//     next writer removes when it takes the lock.
//   - Every read checks the frame's crc32c against the index, decompresses
//     (zstd's own content checksum is on), decodes the record and checks its
//     key and shape against the index: a damaged shard gives an error naming
//     the shard and the key, never a wrong latent.
//
// Latents are unscaled (the SD 1.x factor 0.18215 is applied by training),
// shape [C, H, W] (C = 4, H and W = bucket / 8), stored as little-endian
// IEEE fp16.
package latentcache
