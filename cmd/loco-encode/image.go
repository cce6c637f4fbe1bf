package main

import (
	"errors"
	"image"
	"io/fs"
	"os"

	"loco/pkg/imageio"
)

// readImage reads and decodes an image with its EXIF orientation applied.
func readImage(path string) (*image.NRGBA, imageio.Info, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, imageio.Info{}, unwrapPath(err)
	}
	return imageio.Decode(b, 0)
}

// unwrapPath drops the path of a *fs.PathError (the caller names the file).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
