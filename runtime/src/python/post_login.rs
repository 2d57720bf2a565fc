//! An auth checker's post-login callback (the second item of the `(user_id, callback)` it
//! returns): the host keeps the callable under a handle, with a bounded lifetime, and answers
//! the handle; glia names the host process in it (`<pid>.<host's handle>`), so that the
//! `post_login` call carrying the login result goes back to the one host holding the callable.

use glia_bus_schema::{CallbackRequest, Ignored, InvocationReply, InvocationResult, ModuleAnswer};

/// Where an invocation goes.
pub enum Route {
    /// Not a `post_login` call: to the least busy host.
    AnyHost(CallbackRequest),
    /// Another module's post-login callback: answered at once, with nothing.
    NotOurs,
    /// To the host `pid`, with the handle that host gave.
    Host(u32, CallbackRequest),
}

/// Where `request` goes, for the module `module`.
pub fn route(request: CallbackRequest, module: &str) -> Route {
    let CallbackRequest::PostLogin(mut args) = request else {
        return Route::AnyHost(request);
    };
    if args.module != module {
        return Route::NotOurs;
    }
    match args.handle.split_once('.') {
        Some((pid, handle)) => match pid.parse() {
            Ok(pid) => {
                args.handle = handle.to_owned();
                Route::Host(pid, CallbackRequest::PostLogin(args))
            }
            Err(_) => Route::NotOurs,
        },
        None => Route::NotOurs,
    }
}

/// The answer to a `post_login` call that goes nowhere.
pub fn nothing() -> ModuleAnswer {
    ModuleAnswer::PostLogin(Ignored::default())
}

/// Names the host `pid` in the post-login handle an auth checker's answer carries.
pub fn name_host(reply: &mut InvocationReply, pid: u32) {
    let InvocationResult::Answer(answer) = &mut reply.result else {
        return;
    };
    let success = match answer {
        ModuleAnswer::CheckAuth(Some(success)) | ModuleAnswer::Check3pidAuth(Some(success)) => {
            success
        }
        _ => return,
    };
    if let Some(handle) = &mut success.post_login {
        *handle = format!("{pid}.{handle}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glia_bus_schema::requests::PostLogin;

    fn post_login(module: &str, handle: &str) -> CallbackRequest {
        CallbackRequest::PostLogin(PostLogin {
            module: module.into(),
            handle: handle.into(),
            login_result: Default::default(),
        })
    }

    #[test]
    fn a_handle_goes_to_the_host_it_names_and_only_for_its_module() {
        match route(post_login("m", "4242.abc"), "m") {
            Route::Host(4242, CallbackRequest::PostLogin(args)) => assert_eq!(args.handle, "abc"),
            _ => panic!("expected host 4242"),
        }
        assert!(matches!(
            route(post_login("other", "4242.abc"), "m"),
            Route::NotOurs
        ));
        assert!(matches!(
            route(post_login("m", "no-host"), "m"),
            Route::NotOurs
        ));
    }
}
