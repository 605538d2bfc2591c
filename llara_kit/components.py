"""The built-in torch components, registered through the same hooks a third-party plugin
uses. Each factory is named as ``"module:attribute"`` and imported when first built, so that
``llara-kit --help`` and ``list-plugins`` import no torch. (Schedules, templates and data
sets import nothing heavy and register themselves in their own modules.)
"""

from __future__ import annotations

from llara_kit.hookspecs import Register, hookimpl


@hookimpl
def register_encoders(register: Register) -> None:
    register("sasrec", "llara_kit.encoders.sasrec:SASRec",
             description="SASRec: causal self-attention (Kang & McAuley 2018)")
    register("gru4rec", "llara_kit.encoders.gru4rec:GRU4Rec",
             description="GRU4Rec: recurrent (Hidasi et al. 2016)")
    register("caser", "llara_kit.encoders.caser:Caser",
             description="Caser: convolutional (Tang & Wang 2018)")


@hookimpl
def register_projectors(register: Register) -> None:
    register("linear", "llara_kit.model.projectors:LinearProjector",
             description="Linear d -> H (ablation)")
    register("mlp", "llara_kit.model.projectors:MLPProjector",
             description="Linear d -> H, GELU, Linear H -> H (paper)")


@hookimpl
def register_objectives(register: Register) -> None:
    register("title", "llara_kit.model.objectives:TitleObjective",
             description="next-token loss on the target title; rank by title likelihood (paper)")
    register("head", "llara_kit.model.objectives:HeadObjective",
             description="linear score head at each candidate's token; listwise cross-entropy")
