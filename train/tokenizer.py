# tokenizer.py — a Qwen2-style byte-level BPE tokenizer learned from the synthetic corpus, written
# as a Hugging Face `tokenizer.json` + `tokenizer_config.json` (with a chat template), and the
# Python encoder/decoder the training scripts use.
#
# See docs §4.1 (prompt format), §4.2 (special tokens; MASK lives only in config.json),
# §3.6 (the prompt is split on `<image>` and each chunk tokenized on its own, sentinel −200 between).
#
# Layout of ids (T = tokenizer size):
#   0..255            the 256 byte symbols (GPT-2 byte→unicode map, as Qwen)
#   256..256+M-1      one id per learned merge, in merge order (rank r ↔ id 256 + r)
#   T-3, T-2, T-1     <|endoftext|>, <|im_start|>, <|im_end|> (same order as Qwen's 151643..151645)
# config.json then puts MASK at T + 6 (like 151671 = 151665 + 6) and pads the embedding rows.
#
# The pre-tokenizer is Qwen2's regex. Python's `re` has no \p{L}/\p{N}, so the corpus and every
# text we encode are restricted to ASCII, where \p{L} = [A-Za-z] and \p{N} = [0-9] exactly; the
# tokenizer.json carries the real Unicode regex, so the HF tokenizer gives the same ids on ASCII.
# `check_with_node` (run by run_all.sh) verifies that claim against @huggingface/tokenizers.
import json
import re
from collections import Counter

SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
# Qwen2's pre-tokenizer pattern as stored in its tokenizer.json.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# The same pattern with the ASCII meaning of \p{L} ([A-Za-z]) and \p{N} ([0-9]).
_ASCII_PATTERN = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]|"
    r" ?[^\sA-Za-z0-9]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPECIAL_SPLIT = re.compile('(' + '|'.join(re.escape(s) for s in SPECIAL_TOKENS) + ')')


def bytes_to_unicode():
    """GPT-2's reversible byte → printable-unicode map (byte-level BPE symbols)."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_TO_SYM = bytes_to_unicode()
SYM_TO_BYTE = {s: b for b, s in BYTE_TO_SYM.items()}


def check_ascii(text):
    # Printable ASCII, tab and newline only: there Python's \s, [A-Za-z] and [0-9] agree with the
    # Unicode classes of the HF regex (Python's \s also matches \x1c-\x1f, Unicode's does not).
    if not all(c in '\t\n' or ' ' <= c <= '~' for c in text):
        raise ValueError(f'tokenizer: text outside printable ASCII + newline is not supported: {text!r}')


def pretokenize(text):
    """Qwen2 regex split (ASCII), each piece mapped to byte symbols."""
    check_ascii(text)
    return [''.join(BYTE_TO_SYM[b] for b in piece.encode('ascii')) for piece in _ASCII_PATTERN.findall(text)]


def learn_merges(texts, max_merges):
    """Classic BPE training over pre-token counts. Ties: highest count, then the smallest pair
    (string order), so the result depends only on the corpus."""
    words = Counter()
    for t in texts:
        for chunk in _SPECIAL_SPLIT.split(t):
            if chunk and chunk not in SPECIAL_TOKENS:
                words.update(pretokenize(chunk))
    seqs = {w: list(w) for w in words}
    merges = []
    while len(merges) < max_merges:
        pairs = Counter()
        for w, n in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        (a, b) = best[0]
        merges.append((a, b))
        for w in seqs:
            seqs[w] = _merge_once(seqs[w], a, b)
    return merges


def _merge_once(s, a, b):
    out, i = [], 0
    while i < len(s):
        if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(s[i])
            i += 1
    return out


class Tokenizer:
    """Encoder/decoder over the learned merges (the same algorithm as HF's BPE model: repeatedly
    apply the lowest-rank merge present, leftmost occurrences first)."""

    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        # The byte symbols are ordered by byte value: id = byte.
        self.vocab = {BYTE_TO_SYM[b]: b for b in range(256)}
        for r, (a, b) in enumerate(self.merges):
            tok = a + b
            if tok in self.vocab:
                raise ValueError(f'tokenizer: merge {a!r}+{b!r} repeats token {tok!r}')
            self.vocab[tok] = 256 + r
        self.ranks = {m: r for r, m in enumerate(self.merges)}
        base = 256 + len(self.merges)
        self.special = {s: base + i for i, s in enumerate(SPECIAL_TOKENS)}
        self.size = base + len(SPECIAL_TOKENS)
        self.id_to_tok = {i: t for t, i in self.vocab.items()}
        self.id_to_tok.update({i: s for s, i in self.special.items()})
        self.endoftext, self.im_start, self.im_end = (self.special[s] for s in SPECIAL_TOKENS)
        self._cache = {}

    def _bpe(self, word):
        if word in self._cache:
            return self._cache[word]
        s = list(word)
        while len(s) > 1:
            best = None
            for i in range(len(s) - 1):
                r = self.ranks.get((s[i], s[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            a, b = self.merges[best[0]]
            s = _merge_once(s, a, b)
        ids = [self.vocab[t] for t in s]
        self._cache[word] = ids
        return ids

    def encode(self, text):
        """Text → ids; special-token strings become their ids; never adds BOS/EOS."""
        ids = []
        for chunk in _SPECIAL_SPLIT.split(text):
            if not chunk:
                continue
            if chunk in self.special:
                ids.append(self.special[chunk])
            else:
                for w in pretokenize(chunk):
                    ids.extend(self._bpe(w))
        return ids

    def decode(self, ids, skip_special=True):
        """Ids → text; ids outside [0, size) (MASK, padding rows, −200) are dropped, as HF does."""
        out, buf = [], []
        for i in ids:
            if not (0 <= i < self.size):
                continue
            t = self.id_to_tok[i]
            if i in self.special.values():
                if buf:
                    out.append(bytes(buf).decode('utf-8', errors='replace'))
                    buf = []
                if not skip_special:
                    out.append(t)
            else:
                buf.extend(SYM_TO_BYTE[c] for c in t)
        if buf:
            out.append(bytes(buf).decode('utf-8', errors='replace'))
        return ''.join(out)

    # ------------------------------------------------------------------ files

    def tokenizer_json(self):
        bl = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': False, 'use_regex': False}
        return {
            'version': '1.0',
            'truncation': None,
            'padding': None,
            'added_tokens': [
                {'id': i, 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False,
                 'normalized': False, 'special': True}
                for s, i in self.special.items()
            ],
            'normalizer': {'type': 'NFC'},
            'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
                {'type': 'Split', 'pattern': {'Regex': QWEN2_PATTERN}, 'behavior': 'Isolated', 'invert': False},
                dict(bl),
            ]},
            'post_processor': dict(bl),
            'decoder': dict(bl),
            'model': {
                'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': '',
                'end_of_word_suffix': '', 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                'vocab': dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                'merges': [f'{a} {b}' for a, b in self.merges],
            },
        }

    def tokenizer_config_json(self, chat_template, model_max_length):
        return {
            'add_bos_token': False,
            'add_prefix_space': False,
            'added_tokens_decoder': {
                str(i): {'content': s, 'lstrip': False, 'normalized': False, 'rstrip': False,
                         'single_word': False, 'special': True}
                for s, i in self.special.items()
            },
            'additional_special_tokens': ['<|im_start|>', '<|im_end|>'],
            'bos_token': None,
            'chat_template': chat_template,
            'clean_up_tokenization_spaces': False,
            'eos_token': '<|im_end|>',
            'errors': 'replace',
            'model_max_length': model_max_length,
            'pad_token': '<|endoftext|>',
            'padding_side': 'right',
            'split_special_tokens': False,
            'tokenizer_class': 'Qwen2Tokenizer',
            'unk_token': None,
        }


def from_tokenizer_json(path):
    with open(path) as f:
        tj = json.load(f)
    merges = [tuple(m.split(' ')) if isinstance(m, str) else tuple(m) for m in tj['model']['merges']]
    tok = Tokenizer(merges)
    if tok.vocab != tj['model']['vocab']:
        raise ValueError(f'{path}: vocab does not follow the byte/merge id layout of tokenizer.py')
    return tok


# The chat template: the §4.1 conversation (Qwen's default system prompt when none is given).
# Images are written as the LLaVA `<image>` placeholder at the front of the user turn.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build(out_dir, seed, corpus_size, max_merges):
    """Learns the merges from `corpus_size` synthetic samples and writes the two JSON files."""
    import os
    import data
    tok = Tokenizer(learn_merges(data.corpus_texts(seed, corpus_size), max_merges))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'tokenizer.json'), 'w') as f:
        json.dump(tok.tokenizer_json(), f, ensure_ascii=False, indent=1)
    with open(os.path.join(out_dir, 'tokenizer_config.json'), 'w') as f:
        json.dump(tok.tokenizer_config_json(CHAT_TEMPLATE, 1024), f, indent=2)
    # Re-reading proves the file round-trips to the same encoder.
    again = from_tokenizer_json(os.path.join(out_dir, 'tokenizer.json'))
    assert again.merges == tok.merges
    return tok


if __name__ == '__main__':
    import argparse
    import os
    ap = argparse.ArgumentParser(description='learn BPE merges and write tokenizer.json / tokenizer_config.json')
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--corpus', type=int, default=4000, help='synthetic samples to learn from')
    ap.add_argument('--merges', type=int, default=400)
    ap.add_argument('--cases', type=int, default=300, help='held-out samples written to cases.json for check_tokenizer.mjs')
    a = ap.parse_args()
    t = build(a.out, a.seed, a.corpus, a.merges)
    import data
    cases = []
    for i in range(a.cases):
        s = data.sample(a.seed, 'heldout', i, draw=False)
        for text in data.prompt_text(s['question'], s['image'] is not None).split(data.IMAGE_PLACEHOLDER):
            cases.append({'text': text, 'ids': t.encode(text)})
        cases.append({'text': s['answer'] + '<|im_end|>\n', 'ids': t.encode(s['answer'] + '<|im_end|>\n')})
    for text in ['hello  world\n\n  x', "it's 12 o'clock!!  ", 'ab\n \n', '   ', 'a\tb', "ABC def, GHI? 007 I'LL"]:
        cases.append({'text': text, 'ids': t.encode(text)})
    with open(os.path.join(a.out, 'cases.json'), 'w') as f:
        json.dump(cases, f)
    print(f'tokenizer: {len(t.merges)} merges, size {t.size} (specials {t.endoftext}..{t.im_end})')
