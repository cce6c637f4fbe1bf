// Package clip is the SD 1.x text encoder: the text transformer of OpenAI
// CLIP ViT-L/14 in the Hugging Face CLIPTextModel layout, written over the
// tensor engine.
//
// Keys are those of a single-file SD 1.x checkpoint under
// "cond_stage_model.transformer.text_model." (the caller's builder carries
// that prefix, see Prefix): embeddings.token_embedding,
// embeddings.position_embedding, encoder.layers.{i}.{layer_norm1,
// self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}, and
// final_layer_norm. embeddings.position_ids, which some checkpoints carry,
// is listed in OptionalKeys: it is never declared nor read, since the
// positions are always 0..T-1.
//
// Forward pass, per sequence of T ≤ ContextLength token ids:
//
//	x = token_embedding[ids] + position_embedding[0..T-1]       [B, T, Width]
//	x = x + out_proj(attn(layer_norm1(x)))                      per layer
//	x = x + fc2(quick_gelu(fc1(layer_norm2(x))))
//
// with causal multi-head attention (query i sees keys 0..i, scale
// head_dim^-½), quick_gelu(x) = x·sigmoid(1.702x) and LayerNorm eps 1e-5.
// There is no padding mask: SD 1.x runs all 77 positions.
//
// Outputs: hidden state 0 is the embeddings and hidden state i the output
// of layer i (Hugging Face output_hidden_states order). last_hidden_state
// is final_layer_norm(hidden state L); kohya's and A1111's clip skip N is
// final_layer_norm(hidden state L-N+1), so N = 2 is the penultimate layer
// through the final LayerNorm. Encode computes only the layers it needs.
//
// Every Linear is an nn.Linear whose Extra hook a LoCon module can set;
// Model.Linears lists them with their module paths under CLIPTextModel
// (the names kohya's lora_te_ keys are made from). Gradients flow through
// the whole encoder, so text-encoder LoCon training works on it.
package clip
