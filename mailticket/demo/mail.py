"""Sample customer mail for `mailticket demo`, the mail the sandbox caught, and the customer's answer to it.

The samples are what a small Brazilian web shop that also sells on a marketplace gets in a week, in
Portuguese and English: late deliveries, size exchanges, double charges, a marketplace partner's
questions, an out-of-office reply, a three-message thread, an HTML-only mail and a photo attachment.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from mailticket.mail.loops import LOOP_HEADER
from mailticket.mail.parse import Inbound

SHOP_NAME = "Loja Exemplo"
SUPPORT_ADDRESS = "atendimento@lojaexemplo.com.br"
PARTNER_ADDRESS = "parceiros@parceiro.mercadoexemplo.com.br"
# A mail client stamps the Date header a little before the server's INTERNALDATE.
SEND_DELAY = timedelta(seconds=40)
# Words that make the demo page propose a Portuguese answer rather than an English one.
PORTUGUESE_HINTS = ("olá", "obrigad", "pedido", "você", "atenciosamente", "prezad")


@dataclass(frozen=True)
class Sample:
    """One customer mail: who, when (how long ago), what; `follows` names the sample it answers."""

    key: str
    ago: timedelta
    name: str
    address: str
    subject: str
    text: str = ""
    html: str = ""  # given without text: an HTML-only mail
    headers: tuple[tuple[str, str], ...] = ()
    attachment: tuple[str, str, bytes] | None = None  # (filename, content type, bytes)
    follows: str | None = None  # key of the sample this one replies to with In-Reply-To/References


def tiny_png(width: int = 48, height: int = 32) -> bytes:
    """A small valid PNG (a shoe-box label in two colours), made here so the package ships no binary file."""
    rows = []
    for y in range(height):
        stripe = (30, 90, 160) if y < height // 3 else (245, 240, 230)
        row = b"".join(bytes((20, 20, 20)) if (x + y) % 11 == 0 else bytes(stripe) for x in range(width))
        rows.append(b"\x00" + row)  # filter type 0 for each scanline

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def _ago(days: int = 0, hours: int = 0, minutes: int = 0) -> timedelta:
    return timedelta(days=days, hours=hours, minutes=minutes)


SAMPLES: tuple[Sample, ...] = (
    Sample("nf-1", _ago(5, 6), "Carlos Mendes", "carlos.mendes@yahoo.com.br", "Nota fiscal do pedido #47750",
           "Boa tarde,\n\nComprei uma cadeira de escritório (pedido #47750) e preciso da nota fiscal para "
           "reembolso da empresa. Vocês podem enviar por e-mail?\n\nObrigado,\nCarlos Mendes"),
    Sample("nf-2", _ago(5, 5, 20), "Carlos Mendes", "carlos.mendes@yahoo.com.br", "Re: Nota fiscal do pedido #47750",
           "Esqueci de dizer: a nota precisa sair no CNPJ da empresa, 12.345.678/0001-90, "
           "Mendes Consultoria Ltda.\n\nCarlos", follows="nf-1"),
    Sample("late-1", _ago(4, 22), "Mariana Costa", "mariana.costa@gmail.com", "Pedido #48213 atrasado",
           "Olá,\n\nFiz o pedido #48213 no dia 3 e o prazo de entrega era de 5 dias úteis. Até agora nada "
           "chegou e o rastreio está parado em \"objeto em trânsito\" há uma semana.\n\nÉ um presente de "
           "aniversário para sábado. Vocês conseguem verificar com a transportadora?\n\nMariana Costa"),
    Sample("garantia", _ago(4, 3), "Roberto Nunes", "roberto.nunes@bol.com.br", "Dúvida sobre garantia",
           "Prezados,\n\nA garantia da fritadeira elétrica (pedido #47102) é de 12 meses com vocês ou direto "
           "com o fabricante? A resistência parou de esquentar.\n\nAtenciosamente,\nRoberto Nunes"),
    Sample("colour", _ago(3, 23), "James Whitfield", "j.whitfield@btinternet.com", "Wrong colour received",
           "Hello,\n\nI ordered the rain jacket in navy (order #48177) and received a bright yellow one. "
           "Could you send the right colour? I can post the yellow one back.\n\nKind regards,\nJames Whitfield"),
    Sample("size", _ago(3, 8), "Rafael Oliveira", "rafael.oliveira@hotmail.com",
           "Troca de tamanho - tênis de corrida 39 para 40",
           "Oi, tudo bem?\n\nO tênis do pedido #48034 ficou apertado, preciso trocar o 39 por um 40 (mesma "
           "cor). Segue a foto da etiqueta da caixa. Como faço para enviar de volta?\n\nValeu,\nRafael",
           attachment=("etiqueta-caixa.png", "image/png", tiny_png())),
    Sample("nf-3", _ago(3, 2), "Carlos Mendes", "carlos.mendes@yahoo.com.br", "RES: Nota fiscal do pedido #47750",
           "Bom dia, alguma novidade sobre a nota fiscal? O financeiro fecha o mês na sexta.\n\nCarlos"),
    Sample("partner-1", _ago(2, 21), "Central de Parceiros MercadoExemplo", PARTNER_ADDRESS,
           "Pergunta de comprador sobre prazo de entrega - anúncio MX-99812",
           "Olá, parceiro Loja Exemplo!\n\nUm comprador fez a pergunta abaixo no anúncio MX-99812 "
           "(Liquidificador 1200W):\n\n  \"Entrega em Curitiba até sexta-feira?\"\n\nLembramos que perguntas "
           "respondidas em até 24 horas melhoram a reputação da sua loja.\n\nEquipe MercadoExemplo",
           headers=(("X-Marketplace-Listing", "MX-99812"),)),
    Sample("double", _ago(2, 7), "Juliana Pereira", "ju.pereira@uol.com.br", "Cobrança em duplicidade no cartão",
           "Boa noite,\n\nO valor do pedido #48250 (R$ 389,90) foi cobrado duas vezes no meu cartão de crédito, "
           "nos dias 14 e 15. Já conferi na fatura. Preciso do estorno de uma das cobranças.\n\n"
           "Juliana Pereira\nCPF 123.456.789-00"),
    Sample("refund", _ago(2, 5), "Sophie Martin", "sophie.martin@gmail.com", "Refund not received yet",
           "Hi,\n\nYou confirmed the return of order #47988 two weeks ago, but the refund has not reached my "
           "card yet. Could you check the status?\n\nThanks,\nSophie"),
    Sample("html-only", _ago(1, 23), "Emily Carter", "emily.carter@outlook.com", "Where is my order? #48102",
           html="<html><body><p>Hello,</p><p>My order <b>#48102</b> shows <i>delivered</i> on your site, but "
                "nothing arrived and my neighbours have not seen a parcel.</p><p>Could you look into it?</p>"
                "<p>Best,<br>Emily Carter</p></body></html>"),
    Sample("cancel", _ago(1, 20), "Lucas Almeida", "lucas.almeida@gmail.com", "Cancelamento do pedido #48320",
           "Olá, gostaria de cancelar o pedido #48320, comprei por engano duas unidades. Ainda não foi "
           "enviado, certo?\n\nLucas"),
    Sample("ooo", _ago(1, 18), "Patrícia Gomes", "patricia.gomes@empresa-exemplo.com.br",
           "Resposta automática: Seu pedido #48290 foi enviado",
           "Estou fora do escritório até 25/11, com acesso limitado ao e-mail. Para assuntos urgentes, "
           "fale com financeiro@empresa-exemplo.com.br.\n\nPatrícia Gomes",
           headers=(("Auto-Submitted", "auto-replied"), ("X-Autoreply", "yes"))),
    Sample("coupon", _ago(1, 9), "Beatriz Santos", "bia.santos@icloud.com", "Cupom PRIMEIRACOMPRA não funciona",
           "Oi! Tentei usar o cupom PRIMEIRACOMPRA e aparece \"cupom inválido\". É minha primeira compra "
           "na loja. Ainda vale?\n\nBia"),
    Sample("portugal", _ago(1, 6), "Inês Ferreira", "ines.ferreira@sapo.pt", "Do you ship to Portugal?",
           "Hello / Olá,\n\nDo you ship to Lisbon, and how long would it take? I'm interested in the ceramic "
           "dinner set.\n\nObrigada,\nInês"),
    Sample("defect", _ago(0, 22), "Fernanda Lima", "fernanda.lima@terra.com.br", "Produto chegou com defeito",
           "Olá,\n\nA cafeteira do pedido #48301 chegou com a jarra de vidro trincada. A caixa estava "
           "amassada. Quero a troca, não o reembolso.\n\nFernanda"),
    Sample("bulk-quote", _ago(0, 20), "Daniel Novak", "purchasing@novak-events.co.uk",
           "Quote for 40 folding chairs",
           "Good afternoon,\n\nWe are organising a conference in São Paulo in March and would like a quote "
           "for 40 folding chairs (model FC-200), delivered to Av. Paulista.\n\nRegards,\nDaniel Novak\n"
           "Novak Events Ltd"),
    Sample("partner-2", _ago(0, 15), "Central de Parceiros MercadoExemplo", PARTNER_ADDRESS,
           "Mediação aberta - pedido MX-99790 - responder em até 48 horas",
           "Olá, parceiro Loja Exemplo!\n\nO comprador do pedido MX-99790 abriu uma mediação: \"O produto "
           "não corresponde ao anúncio\". Responda pela central ou por este e-mail em até 48 horas para "
           "evitar o reembolso automático.\n\nEquipe MercadoExemplo"),
    Sample("address", _ago(0, 9), "Thiago Rocha", "thiago.rocha@gmail.com", "Endereço de entrega errado",
           "Bom dia, coloquei o número errado no endereço do pedido #48342: é Rua das Flores, 152 (e não "
           "125). Dá tempo de corrigir antes do envio?\n\nThiago"),
    Sample("tracking", _ago(0, 6), "Michael Brown", "mbrown@fastmail.com", "Tracking number doesn't work",
           "Hi there,\n\nThe tracking code you sent for order #48298 (BR123456789XX) returns \"not found\" on "
           "the carrier's site. Is it correct?\n\nMichael"),
    Sample("pix", _ago(0, 3), "Gabriel Souza", "gabriel.souza@gmail.com", "Pagamento por Pix não confirmado",
           "Paguei o pedido #48355 por Pix ontem às 21h e o site ainda mostra \"aguardando pagamento\". "
           "Segue o código da transação: E1234567820261119210512345678901.\n\nGabriel"),
    Sample("boleto", _ago(0, 2), "Patrícia Gomes", "patricia.gomes@empresa-exemplo.com.br",
           "Boleto vencido, ainda posso pagar?",
           "Olá, voltei de viagem e o boleto do pedido #48290 venceu ontem. Posso pagar mesmo assim ou "
           "preciso gerar outro?\n\nPatrícia"),
    Sample("thanks", _ago(0, 0, 40), "Camila Ribeiro", "camila.ribeiro@gmail.com", "Elogio ao atendimento",
           "Só queria agradecer à equipe: a troca foi super rápida e o produto novo chegou perfeito. "
           "Vou comprar de novo!\n\nCamila"),
)


@dataclass(frozen=True)
class SampleMail:
    raw: bytes
    received_at: datetime  # the INTERNALDATE to give it in the sandbox mailbox


def _message(name: str, address: str, to: str, subject: str, date: datetime, message_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((name, address))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    return msg


def sample_mails(now: datetime, *, to: str = SUPPORT_ADDRESS,
                 samples: Sequence[Sample] = SAMPLES) -> list[SampleMail]:
    """Every sample as raw bytes, oldest first, dated back from `now`; Message-IDs are new on every call."""
    ids: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    mails = []
    for sample in sorted(samples, key=lambda s: s.ago, reverse=True):
        received = now - sample.ago
        ids[sample.key] = make_msgid(domain=sample.address.rpartition("@")[2])
        msg = _message(sample.name, sample.address, formataddr((SHOP_NAME, to)), sample.subject,
                       received - SEND_DELAY, ids[sample.key])
        refs[sample.key] = []
        if sample.follows:
            refs[sample.key] = [*refs[sample.follows], ids[sample.follows]]
            msg["In-Reply-To"] = ids[sample.follows]
            msg["References"] = " ".join(refs[sample.key])
        for name, value in sample.headers:
            msg[name] = value
        if sample.html and not sample.text:
            msg.set_content(sample.html, subtype="html")
        else:
            msg.set_content(sample.text)
        if sample.attachment:
            filename, content_type, data = sample.attachment
            maintype, _, subtype = content_type.partition("/")
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        mails.append(SampleMail(msg.as_bytes(), received))
    return mails


@dataclass(frozen=True)
class ProposedAnswer:
    """What the demo page proposes as the customer's answer to one of our replies."""

    subject: str
    body: str


def proposed_answer(our_subject: str, our_text: str) -> ProposedAnswer:
    lowered = f"{our_subject}\n{our_text}".lower()
    subject = our_subject if our_subject.lower().startswith("re:") else f"Re: {our_subject}"
    if any(hint in lowered for hint in PORTUGUESE_HINTS):
        return ProposedAnswer(subject, "Obrigado pelo retorno! Só mais uma dúvida: vocês avisam por e-mail quando "
                               "o pedido for despachado?")
    return ProposedAnswer(subject, "Thanks for getting back to me! One more question: will you e-mail me when the "
                           "order ships?")


def customer_answer(*, customer: str, customer_name: str = "", support: str, subject: str, body: str,
                    in_reply_to: str, references: Sequence[str], date: datetime) -> bytes:
    """The customer's answer to one of our replies, threaded to it by In-Reply-To and References.

    `in_reply_to` and `references` are ids without angle brackets, as mailticket stores them.
    """
    domain = customer.rpartition("@")[2] or "customer.invalid"
    msg = _message(customer_name, customer, support, subject, date, make_msgid(domain=domain))
    msg["In-Reply-To"] = f"<{in_reply_to}>"
    msg["References"] = " ".join(f"<{ref}>" for ref in dict.fromkeys([*references, in_reply_to]))
    msg.set_content(body)
    return msg.as_bytes()


@dataclass(frozen=True)
class SentMail:
    """One message mailticket sent, as the sandbox SMTP server received it; `number` counts from 1."""

    number: int
    mail_from: str
    recipients: tuple[str, ...]
    received_at: datetime
    message: Inbound

    @property
    def customer(self) -> str:
        return self.recipients[0] if self.recipients else (self.message.to_addrs or ("",))[0]

    @property
    def ticket_id(self) -> int | None:
        """The ticket our loop header names; every mail mailticket sends carries it."""
        value = (self.message.header(LOOP_HEADER) or "").strip()
        return int(value) if value.isdigit() else None

    def proposed_answer(self) -> ProposedAnswer:
        return proposed_answer(self.message.subject, self.message.text)

    def answer(self, subject: str, body: str, date: datetime) -> bytes:
        """The customer's answer to this mail, as raw bytes to put in the sandbox inbox."""
        return customer_answer(customer=self.customer, support=self.message.from_addr or SUPPORT_ADDRESS,
                               subject=subject, body=body, in_reply_to=self.message.message_id,
                               references=self.message.references, date=date)
