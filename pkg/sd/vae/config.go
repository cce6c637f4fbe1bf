package vae

import (
	"encoding/json"
	"fmt"
)

// Prefix is the key prefix of the VAE in a single-file SD 1.x checkpoint.
const Prefix = "first_stage_model."

// Fixed hyper-parameters of the LDM autoencoder.
const (
	Groups = 32   // GroupNorm groups of every norm layer
	Eps    = 1e-6 // GroupNorm eps
)

// Config holds the autoencoder's hyper-parameters under their LDM names
// (first_stage_config.params and its ddconfig).
type Config struct {
	Ch           int     `json:"ch"`             // base channel count (128 in SD 1.x)
	ChMult       []int   `json:"ch_mult"`        // per-level channel multipliers
	NumResBlocks int     `json:"num_res_blocks"` // ResNet blocks per encoder level (decoder: +1)
	ZChannels    int     `json:"z_channels"`     // latent channels of the encoder/decoder
	EmbedDim     int     `json:"embed_dim"`      // latent channels after quant_conv
	InChannels   int     `json:"in_channels"`    // image channels in (3)
	OutCh        int     `json:"out_ch"`         // image channels out (3)
	ScaleFactor  float32 `json:"scale_factor"`   // latent scale (0.18215 in SD 1.x)
}

// DefaultConfig is SD 1.x's first_stage_config.
func DefaultConfig() Config {
	return Config{Ch: 128, ChMult: []int{1, 2, 4, 4}, NumResBlocks: 2, ZChannels: 4,
		EmbedDim: 4, InChannels: 3, OutCh: 3, ScaleFactor: 0.18215}
}

// Factor is the spatial down-sampling factor, 2^(levels-1).
func (c Config) Factor() int { return 1 << (len(c.ChMult) - 1) }

// Validate reports a configuration this package cannot build.
func (c Config) Validate() error {
	if c.Ch <= 0 || len(c.ChMult) == 0 || c.NumResBlocks <= 0 || c.ZChannels <= 0 ||
		c.EmbedDim <= 0 || c.InChannels <= 0 || c.OutCh <= 0 || c.ScaleFactor <= 0 {
		return fmt.Errorf("vae: bad config %+v", c)
	}
	for _, m := range c.ChMult {
		if m <= 0 || (c.Ch*m)%Groups != 0 {
			return fmt.Errorf("vae: channel count ch %d × ch_mult %d is not a positive multiple of %d groups", c.Ch, m, Groups)
		}
	}
	return nil
}

// ldmParams is first_stage_config.params of an LDM yaml (or a golden case's
// config), with the ddconfig fields this package reads or refuses.
type ldmParams struct {
	EmbedDim    int      `json:"embed_dim"`
	ScaleFactor *float32 `json:"scale_factor"`
	DDConfig    struct {
		DoubleZ         *bool   `json:"double_z"`
		ZChannels       int     `json:"z_channels"`
		InChannels      int     `json:"in_channels"`
		OutCh           int     `json:"out_ch"`
		Ch              int     `json:"ch"`
		ChMult          []int   `json:"ch_mult"`
		NumResBlocks    int     `json:"num_res_blocks"`
		AttnResolutions []int   `json:"attn_resolutions"`
		Dropout         float64 `json:"dropout"`
	} `json:"ddconfig"`
}

// ConfigFromLDM reads an LDM first_stage_config.params object:
// {"embed_dim": 4, "ddconfig": {...}, "scale_factor": 0.18215}. A missing
// scale_factor means SD 1.x's 0.18215. Attention outside the mid blocks and
// double_z false are refused.
func ConfigFromLDM(raw []byte) (Config, error) {
	var p ldmParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return Config{}, fmt.Errorf("vae: config: %w", err)
	}
	d := p.DDConfig
	if d.DoubleZ != nil && !*d.DoubleZ {
		return Config{}, fmt.Errorf("vae: config: double_z false is not supported")
	}
	if len(d.AttnResolutions) != 0 {
		return Config{}, fmt.Errorf("vae: config: attn_resolutions %v: attention outside the mid blocks is not supported", d.AttnResolutions)
	}
	c := Config{Ch: d.Ch, ChMult: d.ChMult, NumResBlocks: d.NumResBlocks, ZChannels: d.ZChannels,
		EmbedDim: p.EmbedDim, InChannels: d.InChannels, OutCh: d.OutCh, ScaleFactor: 0.18215}
	if p.ScaleFactor != nil {
		c.ScaleFactor = *p.ScaleFactor
	}
	return c, c.Validate()
}
