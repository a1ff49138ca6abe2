//! Keyboard reach: Druid 0.8's buttons cannot take focus. [`Focusable`]
//! wraps a widget so that Tab and Shift+Tab reach it, Enter or Space
//! activate it, a ring shows where the focus is, and (for lists) the arrow
//! keys do something.

use std::rc::Rc;

use druid::widget::prelude::*;
use druid::widget::{Button, Controller};
use druid::{KbKey, Selector, WidgetExt as _, theme};

type Action<T> = Rc<dyn Fn(&mut EventCtx<'_, '_>, &mut T, &Env)>;
type Arrow<T> = Box<dyn Fn(&mut EventCtx<'_, '_>, &mut T, i32)>;

pub struct Focusable<T, W> {
    inner: W,
    activate: Option<Action<T>>,
    arrows: Option<Arrow<T>>,
}

impl<T: Data, W: Widget<T>> Focusable<T, W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            activate: None,
            arrows: None,
        }
    }

    /// Up and Down call `f` with -1 and +1.
    pub fn on_arrows(mut self, f: impl Fn(&mut EventCtx<'_, '_>, &mut T, i32) + 'static) -> Self {
        self.arrows = Some(Box::new(f));
        self
    }
}

/// A button that the keyboard reaches: click, Enter or Space run `f`.
pub fn button<T: Data>(
    label: &str,
    f: impl Fn(&mut EventCtx<'_, '_>, &mut T, &Env) + 'static,
) -> impl Widget<T> {
    let f: Action<T> = Rc::new(f);
    let g = Rc::clone(&f);
    Focusable {
        inner: Button::new(label.to_owned()).on_click(move |ctx, d, env| g(ctx, d, env)),
        activate: Some(f),
        arrows: None,
    }
}

impl<T: Data, W: Widget<T>> Widget<T> for Focusable<T, W> {
    fn event(&mut self, ctx: &mut EventCtx<'_, '_>, event: &Event, data: &mut T, env: &Env) {
        if let Event::KeyDown(k) = event
            && ctx.is_focused()
        {
            let key = &k.key;
            let activates = *key == KbKey::Enter || *key == KbKey::Character(" ".into());
            let arrow = match key {
                KbKey::ArrowUp => Some(-1),
                KbKey::ArrowDown => Some(1),
                _ => None,
            };
            if *key == KbKey::Tab {
                if k.mods.shift() {
                    ctx.focus_prev();
                } else {
                    ctx.focus_next();
                }
            } else if let (true, Some(f)) = (activates, &self.activate) {
                f(ctx, data, env);
            } else if let (Some(delta), Some(f)) = (arrow, &self.arrows) {
                f(ctx, data, delta);
            } else {
                self.inner.event(ctx, event, data, env);
                return;
            }
            ctx.set_handled();
            ctx.request_paint();
            return;
        }
        if let Event::MouseDown(_) = event {
            ctx.request_focus();
        }
        self.inner.event(ctx, event, data, env);
    }

    fn lifecycle(
        &mut self,
        ctx: &mut LifeCycleCtx<'_, '_>,
        event: &LifeCycle,
        data: &T,
        env: &Env,
    ) {
        match event {
            LifeCycle::BuildFocusChain => ctx.register_for_focus(),
            LifeCycle::FocusChanged(_) => ctx.request_paint(),
            _ => {}
        }
        self.inner.lifecycle(ctx, event, data, env);
    }

    fn update(&mut self, ctx: &mut UpdateCtx<'_, '_>, old: &T, data: &T, env: &Env) {
        self.inner.update(ctx, old, data, env);
    }

    fn layout(
        &mut self,
        ctx: &mut LayoutCtx<'_, '_>,
        bc: &BoxConstraints,
        data: &T,
        env: &Env,
    ) -> Size {
        self.inner.layout(ctx, bc, data, env)
    }

    fn paint(&mut self, ctx: &mut PaintCtx<'_, '_, '_>, data: &T, env: &Env) {
        self.inner.paint(ctx, data, env);
        if ctx.is_focused() {
            let ring = ctx.size().to_rect().inset(-1.5).to_rounded_rect(4.0);
            ctx.stroke(ring, &env.get(theme::PRIMARY_LIGHT), 2.0);
        }
    }
}

const FOCUS_ME: Selector = Selector::new("anonchat.focus-me");

/// Takes the keyboard focus when it appears (the first field of a screen),
/// so that typing and Tab work without a click.
pub struct AutoFocus;

impl<T, W: Widget<T>> Controller<T, W> for AutoFocus {
    fn event(
        &mut self,
        child: &mut W,
        ctx: &mut EventCtx<'_, '_>,
        event: &Event,
        data: &mut T,
        env: &Env,
    ) {
        if let Event::Command(c) = event
            && c.is(FOCUS_ME)
        {
            ctx.request_focus();
            ctx.set_handled();
            return;
        }
        child.event(ctx, event, data, env);
    }

    fn lifecycle(
        &mut self,
        child: &mut W,
        ctx: &mut LifeCycleCtx<'_, '_>,
        event: &LifeCycle,
        data: &T,
        env: &Env,
    ) {
        if let LifeCycle::WidgetAdded = event {
            ctx.submit_command(FOCUS_ME.to(ctx.widget_id()));
        }
        child.lifecycle(ctx, event, data, env);
    }
}

/// `AutoFocus` for any widget.
pub trait AutoFocusExt<T: Data>: Widget<T> + Sized + 'static {
    fn auto_focus(self) -> impl Widget<T> {
        self.controller(AutoFocus)
    }
}

impl<T: Data, W: Widget<T> + 'static> AutoFocusExt<T> for W {}
