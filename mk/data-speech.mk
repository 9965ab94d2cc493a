# Spoken digits for the sound condition (gankernels/data/speech.py): Debian espeak-ng
# speaks the training clips, asterisk-core-sounds-en-wav holds the held-out recordings of
# a real voice, flite (optional) is a second synthesiser for validation. As root with
# apt-get they are installed, otherwise the command is printed. With the venv set up the
# clips are then made and cached once ($GANKERNELS_DATA/speech, a few minutes; the
# loaders would make them on first use otherwise).
# Included by the Makefile; `make data-speech`.
SPEECH_RECORDINGS := /usr/share/asterisk/sounds/en_US_f_Allison/digits/0.wav
SPEECH_PYTHON ?= .venv/bin/python

.PHONY: data-speech

data-speech:
	@missing=""; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	[ -f $(SPEECH_RECORDINGS) ] || missing="$$missing asterisk-core-sounds-en-wav"; \
	command -v flite >/dev/null || missing="$$missing flite"; \
	if [ -z "$$missing" ]; then \
		echo "espeak-ng, asterisk-core-sounds-en-wav, flite: installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq $$missing; \
	else \
		echo "speech packages missing:$$missing; as root run:" \
			"apt-get update && apt-get install -y$$missing"; \
	fi
	@if [ -x $(SPEECH_PYTHON) ] && command -v espeak-ng >/dev/null; then \
		$(SPEECH_PYTHON) -m gankernels.data.speech; \
	fi
