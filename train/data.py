# data.py — the synthetic task: pictures of 1–3 coloured shapes with questions and answers, plus
# text-only tasks (counting, reversing letters), and their rendering into training sequences.
#
# Every sample is a pure function of (seed, split, index): `sample(seed, split, i)` builds its own
# random.Random, so any step of any run can be regenerated without replaying the others.
#
# Scenes: 1–3 shapes (circle / square / triangle) in distinct quadrants (top left, top right,
# bottom left, bottom right), each with one of five colours, on a light background. Pictures are
# square with sizes 64..232 px; preprocess.py's pixel bounds resize every one of them to 168² (a 6×6
# grid of merged tokens). Why square: this family gives the text decoder 1-D positions only (§2.8)
# and the tower's 2-D rotary is relative, so "top left" is learnable from the token's place in the
# image only when the grid width is the same for every picture; with free aspect ratios a model
# this small confuses quadrants (measured: 'where' 62 %, 'what is at' 67 % after 2500 steps).
#
# Sequences (docs §4.1, §3.6, §6.2, §6.5): one user turn, the Qwen system prompt, `<image>\n`
# at the front of the user text for image samples; `render` returns ids with the −200 sentinel
# where the image features go and the labels: assistant turn in full (header and trailing
# `<|im_end|>\n` included), −100 elsewhere except `\n`, `<|im_start|>`, `<|im_end|>`.
import random

from PIL import Image, ImageDraw

SYSTEM_PROMPT = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.'
IMAGE_PLACEHOLDER = '<image>'
IMAGE_TOKEN_INDEX = -200
IGNORE = -100

COLORS = {  # name → RGB; each drawn with a small jitter
    'red': (215, 40, 40),
    'green': (40, 165, 60),
    'blue': (40, 80, 215),
    'yellow': (235, 200, 30),
    'purple': (140, 60, 175),
}
SHAPES = ['circle', 'square', 'triangle']
QUADRANTS = ['top left', 'top right', 'bottom left', 'bottom right']  # also the describe order
NUMBER_WORDS = {1: 'one', 2: 'two', 3: 'three'}
LETTERS = 'abcdefghijklmnopqrstuvwxyz'

# Fraction of samples per kind. TASK_WEIGHTS is the task itself: the held-out set (and so every
# exact-match number in the README) is drawn with it, whatever the training recipe does, so
# recipes are compared on the same 300 prompts. TRAIN_WEIGHTS is the recipe's mix: the two kinds
# a 4-layer decoder learns last ('where' needs absolute image-token positions through 1-D text
# RoPE; reversal needs an induction circuit) get more samples than the task has.
TASK_WEIGHTS = [('describe', 0.30), ('count', 0.10), ('what_at', 0.25), ('where', 0.10),
                ('text_count', 0.10), ('text_reverse', 0.15)]
TRAIN_WEIGHTS = [('describe', 0.20), ('count', 0.08), ('what_at', 0.17), ('where', 0.20),
                 ('text_count', 0.10), ('text_reverse', 0.25)]

SPLIT_SALT = {'train': 1, 'heldout': 2, 'tok': 3}


def _rng(seed, split, i):
    # String seeds hash deterministically in random.Random (sha512 of the string).
    return random.Random(f'{seed}/{SPLIT_SALT[split]}/{i}')


def make_scene(rng):
    n = rng.choice([1, 2, 3])
    quads = sorted(rng.sample(range(4), n))
    return [{'quad': q, 'color': rng.choice(list(COLORS)), 'shape': rng.choice(SHAPES)} for q in quads]


def draw_scene(rng, scene, size=None):
    """RGB PIL image of the scene (size unless given, background, shape sizes and offsets drawn
    from rng)."""
    w = h = size if size is not None else rng.randint(64, 232)
    bg = tuple(rng.randint(215, 255) for _ in range(3))
    img = Image.new('RGB', (w, h), bg)
    d = ImageDraw.Draw(img)
    for s in scene:
        qx, qy = s['quad'] % 2, s['quad'] // 2
        cw, ch = w / 2, h / 2
        size = min(cw, ch) * rng.uniform(0.55, 0.85)
        cx = cw * qx + cw / 2 + rng.uniform(-0.08, 0.08) * cw
        cy = ch * qy + ch / 2 + rng.uniform(-0.08, 0.08) * ch
        col = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLORS[s['color']])
        r = size / 2
        box = [cx - r, cy - r, cx + r, cy + r]
        if s['shape'] == 'circle':
            d.ellipse(box, fill=col)
        elif s['shape'] == 'square':
            d.rectangle(box, fill=col)
        else:
            d.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=col)
    return img


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


def sample(seed, split, i):
    """One sample: {'kind', 'question', 'answer', 'image' (PIL or None), 'scene'}."""
    rng = _rng(seed, split, i)
    weights = TASK_WEIGHTS if split == 'heldout' else TRAIN_WEIGHTS   # 'tok' texts belong to the recipe
    r, acc, kind = rng.random(), 0.0, weights[-1][0]
    for k, w in weights:
        acc += w
        if r < acc:
            kind = k
            break
    if kind.startswith('text_'):
        q, a = text_task(rng, kind)
        return {'kind': kind, 'question': q, 'answer': a, 'image': None, 'scene': None}
    scene = make_scene(rng)
    img = draw_scene(rng, scene)
    q, a = image_qa(rng, kind, scene)
    return {'kind': kind, 'question': q, 'answer': a, 'image': img, 'scene': scene}


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
        s = sample(seed, 'tok', i)
        out.append(prompt_text(s['question'], False) + s['answer'] + '<|im_end|>\n')
    return out
