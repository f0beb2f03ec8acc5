# data.py — the synthetic task: pictures of 1–3 coloured shapes with questions and answers, plus
# text-only tasks (counting, reversing letters), and their rendering into training sequences.
#
# Every sample is a pure function of (seed, split, index): `sample(seed, split, i)` builds its own
# random.Random, so any step of any run can be regenerated without replaying the others.
#
# Scenes: 1–3 shapes (circle / square / triangle) in distinct quadrants (top left, top right,
# bottom left, bottom right), each with one of five colours, no two with the same colour and shape
# (so "Where is the red circle?" has one answer). How a scene is drawn — canvas size and aspect,
# background, shape size and place inside its quadrant, colour jitter, outlines, anti-aliasing,
# JPEG, noise — is render.py's spec; the training and in-distribution held-out pictures are drawn
# by render.render_pil, the unseen-renderer held-out set by render_svg.mjs from the same specs.
#
# Sequences (docs §4.1, §3.6, §6.2, §6.5): one user turn, the Qwen system prompt, `<image>\n`
# at the front of the user text for image samples; `render` returns ids with the −200 sentinel
# where the image features go and the labels: assistant turn in full (header and trailing
# `<|im_end|>\n` included), −100 elsewhere except `\n`, `<|im_start|>`, `<|im_end|>`.
import random

import render as rd

SYSTEM_PROMPT = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.'
IMAGE_PLACEHOLDER = '<image>'
IMAGE_TOKEN_INDEX = -200
IGNORE = -100

COLORS = rd.COLORS
SHAPES = rd.SHAPES
QUADRANTS = ['top left', 'top right', 'bottom left', 'bottom right']  # also the describe order
NUMBER_WORDS = {1: 'one', 2: 'two', 3: 'three'}
LETTERS = 'abcdefghijklmnopqrstuvwxyz'

# Fraction of samples per kind. TASK_WEIGHTS is the task itself: the in-distribution held-out set
# (and so every exact-match number in the README) is drawn with it, whatever the training recipe
# does, so recipes are compared on the same 300 prompts. TRAIN_WEIGHTS is the recipe's mix: the
# picture kinds get three quarters of the samples (the pictures vary a lot: size, aspect,
# background, style), 'where' most of all, and reversal enough for its induction circuit to form.
TASK_WEIGHTS = [('describe', 0.30), ('count', 0.10), ('what_at', 0.25), ('where', 0.10),
                ('text_count', 0.10), ('text_reverse', 0.15)]
TRAIN_WEIGHTS = [('describe', 0.25), ('count', 0.08), ('what_at', 0.18), ('where', 0.22),
                 ('text_count', 0.07), ('text_reverse', 0.20)]
# The unseen-renderer held-out set: picture kinds only (text prompts have no renderer), equal shares.
UNSEEN_WEIGHTS = [('describe', 0.25), ('count', 0.25), ('what_at', 0.25), ('where', 0.25)]
IMAGE_KINDS = ('describe', 'count', 'what_at', 'where')

# Curriculum (training split only, by sample index): every picture is drawn plainly
# (render.make_easy_spec) up to EASY_FULL, then the share of plain pictures falls linearly to 0 at
# EASY_END; later samples, and every held-out one, get the full variety (render.make_spec). Without
# it the recipe never learned colours or shapes: after 2500 AR steps on the full variety the parent
# placed and counted shapes (quadrants 85 %) but described every one as "a yellow circle".
EASY_FULL = 600 * 32
EASY_END = 2400 * 32


def easy_share(i):
    if i < EASY_FULL:
        return 1.0
    return max(0.0, 1.0 - (i - EASY_FULL) / (EASY_END - EASY_FULL))


SPLIT_SALT = {'train': 1, 'heldout': 2, 'tok': 3, 'unseen': 4}


def _rng(seed, split, i):
    # String seeds hash deterministically in random.Random (sha512 of the string).
    return random.Random(f'{seed}/{SPLIT_SALT[split]}/{i}')


def make_scene(rng):
    n = rng.choice([1, 2, 3])
    quads = sorted(rng.sample(range(4), n))
    pairs = rng.sample([(c, sh) for c in COLORS for sh in SHAPES], n)   # distinct (colour, shape)
    return [{'quad': q, 'color': c, 'shape': sh} for q, (c, sh) in zip(quads, pairs)]


def _phrase(s):
    return f"a {s['color']} {s['shape']}"


def describe(scene):
    parts = [f"{_phrase(s)} at the {QUADRANTS[s['quad']]}" for s in scene]
    text = parts[0] if len(parts) == 1 else ', '.join(parts[:-1]) + ' and ' + parts[-1]
    return text[0].upper() + text[1:] + '.'


def image_qa(rng, kind, scene):
    if kind == 'describe':
        return 'Describe the image.', describe(scene)
    if kind == 'count':
        n = len(scene)
        return 'How many shapes are there?', ('There is one shape.' if n == 1 else f'There are {NUMBER_WORDS[n]} shapes.')
    if kind == 'what_at':
        q = rng.randrange(4)
        hit = [s for s in scene if s['quad'] == q]
        ans = (_phrase(hit[0]).capitalize() + '.') if hit else 'Nothing.'
        return f'What is at the {QUADRANTS[q]}?', ans
    if kind == 'where':
        s = rng.choice(scene)
        return f"Where is the {s['color']} {s['shape']}?", f"At the {QUADRANTS[s['quad']]}."
    raise ValueError(kind)


def text_task(rng, kind):
    n = rng.randint(2, 7) if kind == 'text_count' else rng.randint(2, 4)
    letters = [rng.choice(LETTERS) for _ in range(n)]
    if kind == 'text_count':
        return f"How many letters are in: {' '.join(letters)}?", f'There are {n} letters.'
    # The answer starts with a word so every letter is the same ' x' token as in the question: a
    # bare first letter ('o' in 'o w') is a different, rarely seen token, and the 4-layer parent
    # got exactly that first letter wrong (0 % exact match at 2500 steps, later letters right).
    return f"Reverse the letters: {' '.join(letters)}", 'Reversed: ' + ' '.join(reversed(letters))


def sample(seed, split, i, draw=True):
    """One sample: {'kind', 'question', 'answer', 'image' (PIL or None), 'scene', 'spec'}. The
    'unseen' split draws no picture here (draw=False never does): its pictures come from
    render_svg.mjs, drawn from 'spec'."""
    rng = _rng(seed, split, i)
    weights = {'heldout': TASK_WEIGHTS, 'unseen': UNSEEN_WEIGHTS}.get(split, TRAIN_WEIGHTS)  # 'tok' texts belong to the recipe
    r, acc, kind = rng.random(), 0.0, weights[-1][0]
    for k, w in weights:
        acc += w
        if r < acc:
            kind = k
            break
    if kind.startswith('text_'):
        q, a = text_task(rng, kind)
        return {'kind': kind, 'question': q, 'answer': a, 'image': None, 'scene': None, 'spec': None}
    scene = make_scene(rng)
    easy = split == 'train' and rng.random() < easy_share(i)
    spec = (rd.make_easy_spec if easy else rd.make_spec)(rng, scene)
    q, a = image_qa(rng, kind, scene)
    img = rd.render_pil(spec) if draw and split != 'unseen' else None
    return {'kind': kind, 'question': q, 'answer': a, 'image': img, 'scene': scene, 'spec': spec}


def prompt_text(question, has_image):
    """The §4.1 prompt up to and including `<|im_start|>assistant\\n`."""
    user = (IMAGE_PLACEHOLDER + '\n' + question) if has_image else question
    return (f'<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n'
            f'<|im_start|>user\n{user}<|im_end|>\n'
            f'<|im_start|>assistant\n')


def encode_prompt(tok, text):
    """§3.6: split on `<image>`, tokenize each chunk alone, −200 between chunks."""
    ids = []
    for k, chunk in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if k:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(tok.encode(chunk))
    return ids


def render(tok, s):
    """(ids, labels) for a full training sequence; ids hold −200 where the image goes (its
    feature rows are labelled −100 at embedding time). Labels are same-position (no shift)."""
    p = encode_prompt(tok, prompt_text(s['question'], s['image'] is not None))
    # The prompt ends with the assistant header `<|im_start|>assistant\n`, which is labelled.
    header = tok.encode('<|im_start|>assistant\n')
    assert p[-len(header):] == header
    keep = {tok.encode('\n')[0], tok.im_start, tok.im_end}
    labels = [t if t in keep else IGNORE for t in p[:-len(header)]] + header
    ans = tok.encode(s['answer'] + '<|im_end|>\n')
    return p + ans, labels + ans


def corpus_texts(seed, n):
    """Texts the BPE merges are learned from (prompt + answer strings, `<image>` removed)."""
    out = []
    for i in range(n):
        s = sample(seed, 'tok', i, draw=False)
        out.append(prompt_text(s['question'], False) + s['answer'] + '<|im_end|>\n')
    return out
