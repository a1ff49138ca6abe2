//! A passphrase field: Druid 0.8 has no password box. It shows one bullet
//! per character, keeps the text in a [`Secret`] (never in the `Data`
//! clones, never in a `Debug`), never copies to the clipboard (copy and cut
//! do nothing; paste in is allowed, for password managers) and has no
//! selection to drag out.

use druid::widget::prelude::*;
use druid::{Application, KbKey, Point, TextLayout, theme};
use zeroize::Zeroizing;

use crate::secret::{Secret, masked};

pub struct PassBox {
    layout: TextLayout<String>,
}

impl PassBox {
    pub fn new() -> Self {
        Self {
            layout: TextLayout::new(),
        }
    }
}

/// Applies one key to the field; true if it changed.
fn edit(data: &Secret, key: &KbKey, mods: druid::Modifiers) -> bool {
    match key {
        KbKey::Backspace => {
            data.backspace();
            true
        }
        KbKey::Character(c) if mods.ctrl() || mods.meta() => {
            // Paste in; copy, cut and everything else: nothing.
            if c.eq_ignore_ascii_case("v")
                && let Some(text) = Application::global().clipboard().get_string()
            {
                let text = Zeroizing::new(text);
                return data.push_str(text.trim_end_matches(['\n', '\r']));
            }
            false
        }
        KbKey::Character(c) if !mods.alt() => data.push_str(c),
        _ => false,
    }
}

impl Widget<Secret> for PassBox {
    fn event(&mut self, ctx: &mut EventCtx<'_, '_>, event: &Event, data: &mut Secret, _env: &Env) {
        match event {
            Event::MouseDown(_) => {
                ctx.request_focus();
                ctx.request_paint();
            }
            Event::KeyDown(k) if ctx.is_focused() => match &k.key {
                KbKey::Tab => {
                    if k.mods.shift() {
                        ctx.focus_prev();
                    } else {
                        ctx.focus_next();
                    }
                    ctx.set_handled();
                }
                // Enter belongs to the form (a controller above).
                KbKey::Enter => {}
                key => {
                    if edit(data, key, k.mods) {
                        ctx.request_paint();
                    }
                    ctx.set_handled();
                }
            },
            _ => {}
        }
    }

    fn lifecycle(
        &mut self,
        ctx: &mut LifeCycleCtx<'_, '_>,
        event: &LifeCycle,
        _: &Secret,
        _: &Env,
    ) {
        match event {
            LifeCycle::BuildFocusChain => ctx.register_for_focus(),
            LifeCycle::FocusChanged(_) => ctx.request_paint(),
            _ => {}
        }
    }

    fn update(&mut self, ctx: &mut UpdateCtx<'_, '_>, old: &Secret, data: &Secret, _: &Env) {
        if !old.same(data) {
            ctx.request_paint();
        }
    }

    fn layout(
        &mut self,
        ctx: &mut LayoutCtx<'_, '_>,
        bc: &BoxConstraints,
        _: &Secret,
        env: &Env,
    ) -> Size {
        self.layout.set_text(masked(1));
        self.layout.rebuild_if_needed(ctx.text(), env);
        let h = (self.layout.size().height + 8.0).max(env.get(theme::BORDERED_WIDGET_HEIGHT));
        bc.constrain(Size::new(bc.max().width.min(10_000.0), h))
    }

    fn paint(&mut self, ctx: &mut PaintCtx<'_, '_, '_>, data: &Secret, env: &Env) {
        let size = ctx.size();
        let rect = size
            .to_rect()
            .inset(-0.5)
            .to_rounded_rect(env.get(theme::TEXTBOX_BORDER_RADIUS));
        ctx.fill(rect, &env.get(theme::BACKGROUND_LIGHT));
        let border = if ctx.is_focused() {
            env.get(theme::PRIMARY_LIGHT)
        } else {
            env.get(theme::BORDER_DARK)
        };
        ctx.stroke(rect, &border, env.get(theme::TEXTBOX_BORDER_WIDTH));
        // The only text this widget ever lays out: bullets.
        self.layout.set_text(masked(data.chars()));
        self.layout.rebuild_if_needed(ctx.text(), env);
        let y = (size.height - self.layout.size().height) / 2.0;
        ctx.with_save(|ctx| {
            ctx.clip(size.to_rect());
            self.layout.draw(ctx, Point::new(8.0, y));
        });
    }
}
