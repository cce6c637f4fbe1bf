package datasettest

import (
	"encoding/binary"
	"hash/crc32"
)

// insertPNGText inserts a tEXt chunk ("Comment", text) after the IHDR chunk
// of png (signature 8 bytes + IHDR 25 bytes).
func insertPNGText(png []byte, text []byte) []byte {
	data := append([]byte("Comment\x00"), text...)
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	chunk = append(chunk, "tEXt"...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	out := make([]byte, 0, len(png)+len(chunk))
	out = append(out, png[:33]...)
	out = append(out, chunk...)
	return append(out, png[33:]...)
}
