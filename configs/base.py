"""Base configuration: every field of every run, one comment each. Dataset configs override it.

Nothing here is derived from other fields (step counts come from the dataset size at run time).
Not a run of its own (it names no built dataset); the model it describes, parameters per module
and output shapes:

  python -m launch.summary --config configs/base.py

Result: none (not a training configuration; see the dataset configs beside it).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 40  # global seed: init, shuffling, dropout (official QVHighlights seed)

  # ---- data: a dataset built by `python -m data_prep.build_tfds` -------------------------------
  c.data = d = ml_collections.ConfigDict()
  d.dataset = "qvhighlights"  # registry key, see sg_detr_jax/data/datasets.py
  d.data_dir = ""  # the --data-dir given to data_prep.build_tfds
  d.train_split = "train"
  d.eval_split = "val"
  d.gt_files = ml_collections.ConfigDict({"val": "", "test": ""})  # split -> annotation jsonl
  # Evaluate on another built dataset than the training one ("" = the same), e.g. InterVid-MR
  # pre-training evaluated zero-shot on QVHighlights val.
  d.eval_data_dir = ""
  d.eval_dataset = ""
  d.video_dim = 512  # raw clip feature width in the dataset (before TEF)
  d.text_dim = 512  # token feature width
  d.max_video_clips = 75  # clips kept per video
  d.pad_to_multiple = 4  # pad each video to a multiple of the FPN's largest stride
  d.padded_rows_valid = True  # official SG-DETR marks those padding rows valid (architecture A12)
  d.use_tef = True  # append the 2 temporal-endpoint features
  d.max_text_tokens = 40  # tokens kept per query
  d.synthetic_raw_dir = ""  # non-empty: generate the synthetic set here + build data_dir if missing
  d.max_windows = 10  # ground-truth windows kept per query (random subset in training)

  # ---- model (architecture.md §3, §9; defaults = the released QVHighlights configuration) ------
  c.model = m = ml_collections.ConfigDict()
  m.d_model = 256
  m.num_heads = 8
  m.ffn_dim = 1024  # FFN hidden width (PReLU, one slope)
  m.dropout = 0.1  # attention-weight and FFN dropout
  m.drop_path = 0.15  # stochastic depth on every residual branch (A7)
  m.input_dropout = 0.5  # dropout inside the input projections
  m.pe_temperature = 10000.0  # sine embeddings of clip positions and decoder references
  m.pooling_layers = 2  # local saliency head's attention-pooling layers (TACoS: 1)
  m.logit_scale_init = 3.0  # theta of eq. 2 (scale exp(theta) ~ 20.1)
  # Gradient of the cosine's L2 normalisation at an all-zero clip row (padding rows at init):
  # False = official torch F.normalize (1 / 1e-12, absorbed by the clipping), True = zero.
  m.l2norm_zero_grad = False
  m.sgca_layers = 2
  m.sgca_gated = True  # multiply post-softmax weights by sigmoid(S_local) (eq. 3); False = ablation (a)
  m.sgca_qkv_proj = False  # per-layer learned Q/K/V in the cross-attention (paper's wording, A3)
  m.encoder_layers = 3  # detector encoder (video only)
  m.saliency_amplifier = True  # eq. 7/9; False: memory = encoder output
  m.global_saliency = True  # eq. 8 offset head; False: S_global = S_local
  m.fpn_strides = (0.5, 1, 2, 4)  # FPN levels in clips (fixed architecture, see models/fpn.py)
  m.anchor_sizes = (4, 16, 32, 64)  # ATSS anchor size per level, clips
  m.atss = True  # hybrid ATSS head (loss + WBF); False = DETR-only rows of the ablation
  m.atss_convs = 3
  m.atss_top_k = 12  # ATSS candidates per level (Charades: 18)
  # Anchors that are ATSS candidates (assignment, focal loss, inference windows): "batch" = every
  # anchor of the batch's padded grid, past a sample's own length too (official); "sample" = only
  # anchors inside the sample's valid length.
  m.atss_anchor_grid = "batch"
  m.atss_gt_tolerance = 0.0  # s added before truncating GT seconds (official 0: 49.99998 -> 49)
  m.prior_prob = 0.35  # class-bias prior (Charades 0.25, TACoS 0.2)
  m.num_queries = 25
  m.proposal_widths = (0.05, 0.2, 0.4, 0.85)  # query-selector default width per FPN level
  m.proposal_range = (0.0125, 0.9875)  # valid (center, width) range of a proposal
  m.decoder_layers = 3
  m.iou_head = True  # IoU-aware scoring (eq. 10); False = ablation rows (a)-(b)
  m.collab = True  # Co-DETR query group from ATSS positives (training only)
  # Collab group slots (static shape; slots >= the batch's max_b |P_b| are masked, A16). 0 = the
  # largest number of ATSS positives of any training example, computed when training starts (the
  # official group is as large as each batch needs, so no positive is ever dropped).
  m.collab_size = 0
  m.denoise = False  # contrastive denoising groups (A1: off in every released config)
  m.dn_budget = 300  # DN queries: groups = max(1, budget // (2 * max_windows))
  m.dn_noise = 0.5
  m.dn_negative_offset = 1.25
  m.sentence_layers = 1  # CG-DETR sentence encoder (training-only alignment branch)
  m.moment_layers = 1
  m.text_pe_len = 100  # the official model's unused learned text PE (parameter-count parity)
  m.negative_local_from_embedded = True  # A13: official; False = V before the modality embedding
  m.dtype = "float32"  # compute dtype ("bfloat16": bf16 compute, fp32 parameters)
  # Operands of the dense layers' products, forward and backward (models/matmul.py): "float32"
  # (official arithmetic) or "bfloat16" (rounded operands, float32 accumulation and activations).
  m.matmul_dtype = "float32"
  # The ATSS head's stem convolutions (k = 3): "direct" (official arithmetic) or "winograd"
  # (F(4, 3): half the products, float32 results within a few 1e-6 of direct; models/winograd.py).
  m.conv_algorithm = "direct"
  # Inference forward on one device in parts of this many rows, one after another in one program,
  # per backend (0: the whole batch at once). Same predictions (the ATSS grid stays the whole
  # batch's); on a CPU, parts whose activations stay in cache run faster (README "Speed against
  # the official code": 16 rows, batch 128, 1.78 -> 1.55 s); accelerators want the whole batch.
  m.predict_rows_per_part = ml_collections.ConfigDict({"cpu": 16, "gpu": 0, "tpu": 0})

  # ---- losses (architecture.md §4, §6; the released weights) ----------------------------------
  c.loss = l = ml_collections.ConfigDict()
  l.saliency = 1.0  # lambda_sal: every HD term, local and global
  l.saliency_margin = 0.15
  l.rank_tau = 0.5  # rank-contrastive temperature
  l.rank_levels = 12  # thresholds r = 1 .. rank_levels - 1, sum divided by rank_levels
  # A batch with exactly one false-negative row (its rolled text partner is from the same video):
  # "official" = that row's rank-contrastive part is ~1e-7 (a shape quirk of the official code);
  # "full" = computed like any other false-negative row.
  l.rank_lone_false_negative = "official"
  l.neg_eps = 1e-7  # -log(max(1 - sigmoid(s_neg), eps))
  l.span = 10.0  # DETR smooth-L1 on (c, w)
  l.giou = 1.0
  l.label = 5.0  # DETR class BCE
  l.background_weight = 0.1  # BCE weight of unmatched queries
  l.quality = 1.0  # IoU head BCE
  l.encoder_coef = 0.5  # query-selector proposals
  l.collab_coef = 0.5
  l.denoise_coef = 0.5
  l.atss_label = 2.0  # focal
  l.atss_span = 0.1  # smooth-L1 in clip units, centerness-weighted
  l.atss_giou = 2.0
  l.atss_ctrness = 0.5
  l.atss_focal_alpha = 0.25
  l.atss_focal_gamma = 2.0
  l.ms_align = 1.0  # moment-sentence focal alignment
  l.align_focal_alpha = 0.5
  l.align_focal_gamma = 2.0
  l.momcls = 3.0  # moment-token clip classification
  # Hungarian matching costs (same for every decoder layer and the encoder proposals)
  l.cost_span = 10.0
  l.cost_giou = 1.0
  l.cost_class = 4.0
  l.cost_iou = 1.0

  # ---- post-processing (architecture.md §5, sg_detr_jax/inference/postprocess.py) -------------
  # Defaults = the official post-processor of QVHighlights (configs/postprocessor/default.yaml of
  # the official code, also used for YouTube-HL and TVSum); TACoS / Charades-STA override them.
  c.postprocess = pp = ml_collections.ConfigDict()
  pp.convention = "official"  # official: lists, values, order | ranked: sorted by sqrt(p*u) (eq. 10)
  pp.fused = True  # write the WBF-fused windows (False: DETR-only) as the main predictions
  # DETR list (official Preparator + PostProcessorDETR; rows stay in class-probability order)
  pp.detr_score = "combo"  # ranking_attribute: row score probs | iou | combo = sqrt(r(p) * r(u))
  pp.detr_nms_iou = None  # nms_threshold: NMS of the DETR list at this IoU (None: none, official)
  pp.detr_nms_score = "probs"  # nms_attribute: score that DETR NMS ranks by (probs | iou | combo)
  # ATSS lists: every anchor of the padded grid, decoded, clamped to the feature-length duration
  pp.atss_seconds_per_unit = 2.0  # official: decoded clip units x 2 on every dataset (ranked: clip_len)
  pp.aux_pre_threshold = 0.05  # preparator.pre_nms_thresh: "-AUX" list, sqrt(p_cls*p_ctr) > this
  pp.aux_nms_iou = 0.5  # preparator.nms_thresh
  pp.aux_top_k = 10  # preparator.fpn_post_nms_top_n (ties at the k-th score are kept)
  pp.atss_pre_threshold = 0.01  # combiner.pre_nms_thresh: ATSS list fused by WBF (both conventions)
  pp.atss_nms_iou = 0.75  # combiner.nms_thresh
  pp.atss_top_k = 10  # combiner.fpn_post_nms_top_n
  # 1-D weighted boxes fusion (combiner)
  pp.wbf_score = "combo"  # combiner.ranking_attribute: DETR conf in WBF: probs|iou|combo=sqrt(p*u)
  pp.wbf_weights = (1.0, 2.5)  # combiner.weights: (DETR, ATSS)
  pp.wbf_iou = 0.8  # combiner.iou_thr: an entry joins a fused box at IoU > this
  pp.wbf_skip = 0.1  # combiner.skip_box_thr: entries with confidence below this are ignored
  pp.wbf_span_seconds = 152.0  # combiner.max_length: span normaliser, s (ranked: each span_seconds)
  # Window clean-up of every list (official PostProcessorDETR; ranked: duration clamp, clip_len)
  pp.round_seconds = 2.0  # clip_length: window ends rounded to multiples of this (s), half to even
  pp.clamp_min = 0.0  # min_ts_val: windows clamped to [clamp_min, clamp_max] s before rounding
  pp.clamp_max = 150.0  # max_ts_val (a constant, not the video's duration)
  pp.min_window = 2.0  # min_w_l: shorter windows are moved to this length (no clamp afterwards)
  pp.max_window = 150.0  # max_w_l: longer windows are moved to this length
  pp.move_window = "center"  # move_window_method: center | left (start kept) | right (end kept)
  pp.score_decimals = 4  # ROUND_DIGITS = 10000: scores (DETR: p and u before the combo) rounded

  # ---- training --------------------------------------------------------------------------------
  c.train = t = ml_collections.ConfigDict()
  t.batch_size = 128  # global batch
  t.num_epochs = 150
  t.eval_batch_size = 128
  # Inference batches launched ahead of the one being post-processed on the host (0: none): the
  # device computes batch n + 1 while the host post-processes batch n (inference/overlap.py).
  t.eval_batches_ahead = 1
  t.eval_every_epochs = 1  # validation (and best-checkpoint selection) cadence
  t.best_metric = "MR-full-mAP"  # key of the metrics' "brief" block used to pick the best checkpoint
  # Head whose metrics pick the best checkpoint: detr | fused. Official QVHighlights rule: the DETR
  # head's val/MR-mAP-Full_Avg (configs/callbacks/model_checkpoint.yaml); Charades/TACoS: fused.
  t.best_head = "detr"
  t.keep_best = 1  # best checkpoints kept besides the latest
  t.log_every_steps = 50
  t.prng_impl = "threefry2x32"  # dropout PRNG; on CPU threefry runs 2x faster than rbg (rbg compiles faster)
  t.init_checkpoint = ""  # "WORKDIR[:latest|best|STEP]": params to start from (default latest)
  t.max_steps = -1  # > 0: stop after this many steps (smoke runs)

  # ---- device mesh (sg_detr_jax/sharding.py) ------------------------------------------------------
  c.mesh = ms = ml_collections.ConfigDict()
  ms.shape = (-1,)  # devices per axis; -1 = all remaining devices (of every process)
  ms.axes = ("data",)
  ms.data_axis = "data"  # batches are split over this axis; parameters are replicated

  # ---- optimiser -------------------------------------------------------------------------------
  c.optim = o = ml_collections.ConfigDict()
  o.lr = 5e-4  # AdamW peak learning rate
  o.weight_decay = 0.1
  o.local_saliency_weight_decay = 0.1  # the official `local_saliency_head` group's fixed decay
  o.b1, o.b2, o.eps = 0.9, 0.999, 1e-8  # torch AdamW defaults
  o.grad_clip = 0.1  # global norm
  o.warmup_epochs = 45  # linear warm-up, stepped per epoch (A2)
  o.warmup_init_lr = 5e-6
  o.milestones = (100, 125)  # epochs at which the lr is multiplied by `gamma`
  o.gamma = 0.5
  return c
